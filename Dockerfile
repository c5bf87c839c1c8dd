# The huimin image: every command (`huimin worker`, `huimin topics`, `huimin replay`, …).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY huimin ./huimin
COPY messages ./messages
COPY settlement ./settlement
COPY records ./records
COPY simulators ./simulators
COPY streams ./streams
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir .
ENTRYPOINT ["huimin"]

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
# Not root: a worker serves HTTP and holds the platform's data. The code stays root's (read
# only to it); /app (the default `--data-dir .huimin-data`), /data and /out are its own.
RUN useradd --system --uid 10001 --no-create-home huimin \
    && mkdir /data /out && chown huimin:huimin /app /data /out
USER huimin
ENTRYPOINT ["huimin"]

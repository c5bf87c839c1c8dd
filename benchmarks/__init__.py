"""pytest-benchmark micro-benchmarks and the end-to-end settlement-latency benchmark."""

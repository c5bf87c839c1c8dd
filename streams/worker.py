"""Run one platform worker process: `python -m streams.worker CONFIG_JSON`."""

from __future__ import annotations

import sys

import orjson
from faust.worker import Worker

from streams.app import create_app
from streams.config import WorkerConfig


def run_worker(cfg: WorkerConfig, loglevel: str = "warning") -> None:
    app = create_app(cfg)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cfg = WorkerConfig.from_dict(orjson.loads(args[0]))
    run_worker(cfg, loglevel=args[1] if len(args) > 1 else "warning")


if __name__ == "__main__":
    main()

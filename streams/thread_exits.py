"""A thread that ends with an exception says so in one log record, not a traceback per line.

A worker stopped after its cluster went away had its Kafka consumer thread (Faust's, running
aiokafka's fetcher) cancelled in the middle of a retry: Python's default hook printed the
traceback to stderr, which Faust's worker turns into a WARNING line per line written, ~40
lines of library frames for what is a normal stop. Now that is one line naming the thread;
any other exception that ends a thread is one ERROR record: the thread, the exception's type
and the frames it was raised through (file, line, function). The exception's text, and the
source lines, are left out: no log line may carry what a message held.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback

log = logging.getLogger("huimin.streams")


def log_thread_exit(args: threading.ExceptHookArgs) -> None:
    """`threading.excepthook` for the worker: WARNING for a thread cancelled (a stop while
    it waited on the cluster), ERROR for anything else."""
    if args.exc_type is SystemExit:
        return  # as Python's own hook: a thread's sys.exit() is not an error
    name = args.thread.name if args.thread is not None else "?"
    service = getattr(args.thread, "service", None)  # mode's threads run a service each
    if service is not None:
        name = f"{name} ({type(service).__name__})"
    if issubclass(args.exc_type, asyncio.CancelledError):
        log.warning("thread %s was cancelled while it stopped (waiting on the cluster?)", name)
    else:  # unexpected: where it was, in one record
        frames = "".join(f"\n  {f.filename}:{f.lineno} in {f.name}"
                         for f in traceback.extract_tb(args.exc_traceback))
        log.error("thread %s ended with %s%s", name, args.exc_type.__name__,
                  f", in:{frames}" if frames else "")


def install() -> None:
    threading.excepthook = log_thread_exit

"""The `huimin` Typer app: its error policy (bad input is one red line and exit 2, not a
traceback), its help formatting, `--version` and SIGTERM."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import select
import signal
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, NoReturn

import aiokafka.errors
import kafka.errors
import typer
import typer.rich_utils
from rich.console import Console
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

from huimin.local_platform import PlatformNotServing, TopicsUnfit, UsedCluster
from huimin.version import huimin_commit
from messages import SCHEMA_VERSION
from messages.identity import shown_text
from simulators.hospital import PlatformOfAnotherWorld, PlatformSilent, SignaturesRefused
from simulators.interrupt import forget_stops, interrupt, is_the_stop, raised_stops, terminated
from streams.broker import BOOTSTRAP_ENV
from streams.role import max_record_bytes
from streams.spare import max_poll_interval_s
from streams.topics import TopicsRefused

#: A cluster that cannot be reached: kafka-python (the hospitals, the topic admin) gives up
#: after its bootstrap timeout; aiokafka (the benchmarks' raw ceiling) on a refused connection.
UNREACHABLE = (kafka.errors.KafkaTimeoutError, kafka.errors.KafkaConnectionError,
               aiokafka.errors.KafkaConnectionError, aiokafka.errors.NoBrokersAvailable)

#: Errors of a file's device that name no file (a write's, mostly: the file is open by
#: then), and what they mean to a person.
DEVICE_ERRORS = {
    errno.ENOSPC: "cannot write the output: no space left on its device",
    errno.EDQUOT: "cannot write the output: the disk quota is used up",
    errno.EFBIG: "cannot write the output: the file would be too large",
    errno.EIO: "an input/output error on a file's device (a failing disk or file system, or "
               "a special file such as one under /proc)"}


class _Console(Console):
    """rich's console, ending as SIGPIPE ends a tool when its output's reader has gone
    (`huimin clearing … | head -1`)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        end_for_reader_gone()


# no emoji codes: a host "a:b:c" or a path with ":b:" in it is printed as given
console = _Console(emoji=False)
errors = _Console(stderr=True, emoji=False)
if not console.is_terminal:  # a log or CI: lines kept whole (commands, paths, tables)
    console.width = errors.width = 200
    console.soft_wrap = True
    # and --help's option names: at 80 columns rich cut them short ("--stop-after-unreac…")
    typer.rich_utils.MAX_WIDTH = typer.rich_utils.MAX_WIDTH or 200


def error_message(exc: BaseException, bootstrap: str | None = None) -> str | None:
    """A one-line message for an error a person can fix (a file or folder that cannot be
    opened, a cluster that cannot be reached); None for anything else: a bug, left to raise
    with its traceback."""
    if isinstance(exc, UsedCluster | TopicsUnfit | TopicsRefused | PlatformNotServing
                  | PlatformSilent | PlatformOfAnotherWorld | SignaturesRefused):
        return str(exc)
    if isinstance(exc, UNREACHABLE):
        where = f"the cluster at {bootstrap}" if bootstrap else "the Kafka cluster"
        return f"cannot reach {where} (is it up?): {exc}"
    if isinstance(exc, OSError) and exc.filename is None and exc.errno in DEVICE_ERRORS:
        return DEVICE_ERRORS[exc.errno]
    if isinstance(exc, OSError) and exc.filename is not None:
        name = Path(os.fsdecode(exc.filename))
        if isinstance(exc, FileNotFoundError) and not name.parent.exists():
            return f"{name}: the folder {name.parent} does not exist"
        if isinstance(exc, IsADirectoryError):
            return f"{name} is a folder, not a file"
        return f"{name}: {exc.strerror or exc}"
    return None


def end_for_reader_gone() -> NoReturn:
    """Exit 141, as SIGPIPE ends a tool (Click and rich would exit 1, which is a FAIL's here),
    with stdout sent to /dev/null so that Python's last flush finds no broken pipe."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(128 + signal.SIGPIPE)


def _stdout_closed() -> bool:
    """Whoever read our output has gone (`huimin clearing … | head -1`): the pipe reports an
    error to a writer."""
    try:
        watch = select.poll()
        watch.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in watch.poll(0))
    except (OSError, ValueError):  # no file descriptor (captured output)
        return False


def _clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command`, exiting 2 with a one-line message on the errors of `error_message`. A
    Ctrl-C or SIGTERM that surfaced as a library's error (simulators/interrupt.py) ends it
    as the stop would have, without a traceback; so does its output's reader going away
    (exit 141: `end_for_reader_gone`)."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        forget_stops()
        noting = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        if noting:  # not where SIGINT is ignored (a background job) or already someone's
            signal.signal(signal.SIGINT, interrupt)
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # the command's own ending
            raise
        except BrokenPipeError:  # a print()'s (rich's consoles: `_Console`)
            if not _stdout_closed():  # a socket's, say: not the reader gone
                raise
            end_for_reader_gone()
        except Exception as exc:
            if is_the_stop(exc):
                raise (SystemExit(128 + signal.SIGTERM) if terminated()
                       else KeyboardInterrupt()) from None
            if not isinstance(exc, (OSError, UsedCluster, TopicsUnfit, TopicsRefused,
                                    PlatformNotServing, PlatformSilent, PlatformOfAnotherWorld,
                                    SignaturesRefused, *UNREACHABLE)):
                raise
            message = error_message(exc, kwargs.get("bootstrap") or os.environ.get(BOOTSTRAP_ENV))
            if message is None:
                raise
            raise refusal_exit(message) from None
        finally:
            forget_stops()
            if noting:
                signal.signal(signal.SIGINT, signal.default_int_handler)
    return wrapper


def check_output(output: Path | None, option: str, **inputs: Path | None) -> None:
    """Refuse (exit 2), before any work, an output file that cannot be written (a folder, or
    in a folder that does not exist) or that is one of the command's inputs: writing it would
    destroy what it reads, or a check would compare a file with itself."""
    if output is None:
        return
    if output.is_dir():
        raise refusal_exit(f"{output} is a folder, not a file")
    for named in (output, *(p for p in inputs.values() if p is not None)):
        try:
            named.resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop (a traceback before)
            raise refusal_exit(f"{named}: {getattr(exc, 'strerror', None) or exc}") from None
    if not output.resolve().parent.is_dir():
        raise refusal_exit(f"{output}: the folder {output.parent} does not exist")
    for what, path in inputs.items():
        if path is not None and (output.resolve() == path.resolve() or (output.exists()
                                 and path.exists() and os.path.samefile(output, path))):
            raise refusal_exit(f"{option} {output} is the {what.replace('_', ' ')}: writing it "
                           "would overwrite that; give another file")


def refusal_exit(exc: Exception | str) -> typer.Exit:
    """Print `exc` as one red `Error:` line on stderr (unwrapped, without markup), for exit 2:
    a file that is not what it should be, a broker that did not start. Stdout keeps only
    what a command produces."""
    errors.print(f"Error: {shown_text(str(exc))}", style="red", soft_wrap=True, markup=False,
                 highlight=False)
    return typer.Exit(2)


@contextlib.contextmanager
def _id_numbers_masked() -> Iterator[None]:
    """Click's usage errors echo what was typed (`--code 11010519491231002X is not one of
    …`, a privacy review): an ID number in them is masked as DOMAIN.md §7 says, as huimin's
    own refusals are (`refusal_exit`)."""
    try:
        yield
    except TyperException as exc:  # Click's usage errors, as Typer carries them
        if isinstance(message := getattr(exc, "message", None), str):
            exc.message = shown_text(message)
        raise


class _FlagsUntyped:
    """A flag's row in `--help` shows no type: Typer 0.29 tags it `<bool>`, which reads as if
    it took a value (`--json true`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _IdNumbersMasked:
    """Options read (`make_context`) and commands run (`invoke`) with ID numbers masked in
    their usage errors."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _id_numbers_masked():
            return super().make_context(*args, **kwargs)  # type: ignore[misc]

    def invoke(self, ctx: Any) -> Any:
        with _id_numbers_masked():
            return super().invoke(ctx)  # type: ignore[misc]


class _Command(_IdNumbersMasked, _FlagsUntyped, TyperCommand):
    pass


class _Group(_IdNumbersMasked, _FlagsUntyped, TyperGroup):
    pass


class _Typer(typer.Typer):
    """Every command's bad input (an unwritable -o, an unreachable --bootstrap) ends in a
    one-line message and exit 2, not a traceback (see `error_message`)."""

    def command(self, *args: Any,  # type: ignore[override]  # Typer's keywords, passed on
                **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            help_text = kwargs.pop("help", None) or _unwrapped(f.__doc__ or "")
            super(_Typer, self).command(*args, help=help_text, cls=_Command,
                                        **kwargs)(_clear_errors(f))
            return f
        return decorator


def _unwrapped(docstring: str) -> str:
    """A docstring's paragraphs each on one line: Typer's Rich help keeps the source's line
    breaks after the first paragraph, which then wrap badly in a terminal."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


app = _Typer(cls=_Group, add_completion=False, no_args_is_help=True,
             help="huimin: cross-province medical-insurance settlement and health-record "
                  "exchange, simulated on a real Kafka-protocol broker.")


def _print_version(asked: bool) -> None:
    if asked:
        commit = huimin_commit()
        print(f"huimin {package_version('huimin')}"
              + (f" (git {commit})" if commit != "?" else "")
              + f", wire contract {SCHEMA_VERSION}")
        raise typer.Exit()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raised_stops.append(signum)
    errors.print("terminated (SIGTERM): stopping what this command started",
                 markup=False, highlight=False)
    raise SystemExit(128 + signum)


@app.callback()
def _before_any_command(version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print huimin's version (and git commit, in a checkout) and exit.")] = False
                             ) -> None:
    # SIGTERM (a CI runner's timeout, `kill`, systemd) unwinds like Ctrl-C, so that a run
    # stops the broker and the workers it started instead of leaving them running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:  # what the workers a command starts will read: refused before anything starts
        max_poll_interval_s()
        max_record_bytes()
    except ValueError as exc:
        raise refusal_exit(exc) from None



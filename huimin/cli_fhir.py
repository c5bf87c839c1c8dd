"""`huimin check-fhir` and `huimin publish`: FHIR files, checked offline or published."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from huimin.cli_app import app, console, refusal_exit
from huimin.cli_options import (
    SaslMechanism,
    SaslUsername,
    SecurityProtocol,
    SslCafile,
    bootstrap_servers,
    platform_records,
    security_settings,
)
from huimin.fhir_check import check_fhir_file
from huimin.publish import (
    MOST_FILES,
    Published,
    Unsendable,
    hospital_for,
    platform_hospitals,
    publish_requests,
    send_publishes,
    sendable,
)
from messages.codes import ErrorCode
from messages.envelope import FIRST_YEAR, LAST_YEAR
from messages.identity import is_valid_certno
from messages.visitlog import TIME_FORMAT
from records.validation import Validator
from simulators.hospital import SIGNATURE_REFUSALS, signatures_refused
from streams.broker import BOOTSTRAP_ENV


def _json_files(paths: list[Path]) -> list[Path]:
    """The files given, a folder's *.json (subfolders too) in its place: regular files only
    (a folder named *.json is not one, and a pipe would be waited on)."""
    files = [f for path in paths for f in (sorted(p for p in path.rglob("*.json") if p.is_file())
                                          if path.is_dir() else [path])]
    if (other := next((f for f in files if f.exists() and not f.is_file()), None)) is not None:
        raise refusal_exit(f"{other} is not a regular file")
    if not files:
        raise refusal_exit("no .json files in the folders given")
    return files


@app.command("check-fhir")
def check_fhir(
    files: Annotated[list[Path], typer.Argument(
        exists=True, help="FHIR R4 resources, one a file (JSON); a folder: its *.json, "
                          "subfolders too.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a file, for scripts.")] = False,
) -> None:
    """Check FHIR files as the platform's ingress checks a published document (7001).

    Offline, with the same checks (the R4B models and the platform's rules): `ok` and what the
    resource is, or the error code a publish would get and where the resource is wrong (never
    a value from it). Exits 0 if every file would be taken, 1 if any would be refused."""
    files = _json_files(files)
    validator = Validator()
    refused = 0
    for path in files:
        check = check_fhir_file(path, validator)
        refused += check.code is not None
        if as_json:
            print(orjson.dumps(check.as_dict()).decode(), flush=True)
            continue
        mark = "[green]ok[/]   " if check.code is None else f"[red]{check.code}[/]"
        where = f" (at {check.where})" if check.where else ""
        console.print(f"{mark}  {escape(str(path))}  {escape(check.what + where)}",
                      soft_wrap=True, highlight=False)
    if not as_json:
        console.print(f"{len(files) - refused:,} of {len(files):,} files would be taken"
                      + (f"; {refused:,} refused" if refused else ""))
    raise typer.Exit(1 if refused else 0)


@app.command()
def publish(
    files: Annotated[list[Path], typer.Argument(
        exists=True, help="FHIR R4 resources, one a file (JSON); a folder: its *.json, "
                          "subfolders too.")],
    certno: Annotated[str, typer.Option(help="The person's citizen ID number: the records' "
                                             "subject, the request's key.")],
    hospital: Annotated[str | None, typer.Option(
        help="The publishing hospital's code (fixmedins_code), e.g. H11010000001. Default: "
             "the first of the province the certno's first two digits name.")] = None,
    at: Annotated[str | None, typer.Option(
        help="The requests' time (inf_time, Beijing), YYYY-MM-DD HH:MM:SS. Default: now. "
             "The same --at and files publish again as duplicates, answered as at first.")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the answers.")
                       ] = 30,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a file, for scripts.")] = False,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
) -> None:
    """Publish FHIR files (7001) to a running platform, as one of its hospitals.

    Each file's resource is sent signed (HUIMIN_SIGNING_SECRET, as the hospitals sign) and
    its answer told: 201 and the DocumentReference's location, or the error code and why.
    Find and read them then through a worker's FHIR views. Exits 0 if every file was
    published, 1 if any was refused or not answered in time."""
    if not is_valid_certno(certno):
        raise typer.BadParameter("not a valid citizen ID number (18 characters, the last "
                                 "its check character)", param_hint="--certno")
    if at is not None:
        try:  # written out in full, as a msgid's time is (2026-1-5 makes one too short)
            when = datetime.strptime(at, TIME_FORMAT)
        except ValueError:
            raise typer.BadParameter("give YYYY-MM-DD HH:MM:SS", param_hint="--at") from None
        if not FIRST_YEAR <= when.year <= LAST_YEAR:  # its msgid would be dead-lettered,
            raise typer.BadParameter(  # unanswered (E1002): a review waited 30 s for nothing
                f"a time in the years {FIRST_YEAR}–{LAST_YEAR}, as a msgid's is",
                param_hint="--at")
        at = when.isoformat(sep=" ")
    try:
        sender = hospital_for(certno, hospital, platform_hospitals())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--hospital") from None
    paths = _json_files(files)
    if len(paths) > MOST_FILES:
        raise refusal_exit(f"{len(paths):,} files: a run publishes at most {MOST_FILES:,} (a "
                       "msgid's sequence number has four digits)")
    readable: list[tuple[int, Path, Any]] = []  # with each file's place among all given
    unread: list[tuple[int, Path, str]] = []  # not sent: what the platform would not even read
    validator = Validator()
    for place, path in enumerate(paths):
        check = check_fhir_file(path, validator)
        if check.code in (ErrorCode.MALFORMED_JSON, ErrorCode.MESSAGE_TOO_LARGE):
            unread.append((place, path, f"{check.code} {check.what}"))  # no request carries it
            continue
        try:  # taken, or refused by the platform with its own answer (E1002, E5001, …)
            readable.append((place, path, sendable(path)))
        except Unsendable:
            unread.append((place, path, "nested past the 255 levels huimin's JSON writer "
                                        f"encodes (the platform would answer {check.code} "
                                        f"{check.what})"))
    security = security_settings(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = bootstrap_servers(bootstrap)
    platform_records(where, security.kafka_python())  # its topics there, or refused at once
    results = send_publishes(where, certno, publish_requests(readable, sender, at), timeout,
                             security.kafka_python())
    lines: list[tuple[int, Published | tuple[Path, str]]] = [
        *zip((place for place, _, _ in readable), results, strict=True),
        *((place, (path, why)) for place, path, why in unread)]
    for _, line in sorted(lines, key=lambda placed: placed[0]):  # in the files' order
        _tell_published(line, as_json)
    published = sum(r.ok for r in results)
    if not as_json:
        console.print(f"{published:,} of {len(paths):,} files published by "
                      f"{sender.fixmedins_code} ({sender.admdvs})"
                      + (f"; {len(paths) - published:,} not" if published < len(paths) else ""))
        if refused := next((r.code for r in results if r.code in SIGNATURE_REFUSALS), None):
            said = signatures_refused(refused, sent="these publishes", outcome="")
            console.print(f"[yellow]{escape(said)}.[/]")
    raise typer.Exit(0 if published == len(paths) else 1)


def _tell_published(line: Published | tuple[Path, str], as_json: bool) -> None:
    """One file's line: its answer, or why it was not sent."""
    if isinstance(line, Published):
        if as_json:
            print(orjson.dumps(line.as_dict()).decode(), flush=True)
            return
        mark = "[green]201[/]  " if line.ok else f"[red]{escape(line.code)}[/]"
        console.print(f"{mark}  {escape(str(line.publish.path))}  {escape(line.what)}  "
                      f"[dim]{line.publish.msgid}[/]", soft_wrap=True, highlight=False)
        return
    path, why = line
    if as_json:
        print(orjson.dumps({"file": str(path), "ok": False, "code": "not sent",
                            "what": why}).decode(), flush=True)
    else:
        console.print(f"[red]not sent[/]  {escape(str(path))}  {escape(why)}",
                      soft_wrap=True, highlight=False)

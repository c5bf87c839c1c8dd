"""`huimin verify` on a generated log and results made from its expected answers, altered as
a test needs: the verdict as its exit code, its output and its --json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from huimin import cli


def results_with_first_answers(tmp_path: Path, answer_of: dict[str, object] | None) -> tuple[
        Path, Path]:
    """A log, and results equal to its expected answers but for the first answer of the
    first two visits (replaced by what `answer_of` gives, if anything)."""
    log = tmp_path / "v.jsonl"
    made = CliRunner().invoke(cli.app, ["generate", "--persons", "200", "--visits", "20",
                                        "--seed", "3", "-o", str(log)])
    assert made.exit_code == 0, made.output
    records = [orjson.loads(line) for line in (tmp_path / "v.expected.jsonl").read_bytes()
               .splitlines() if line.strip()]
    for record in records[:2]:
        msgid = next(iter(record["answers"]))
        if answer_of is not None:
            record["answers"][msgid] = [{**answer_of, "inf_refmsgid": msgid}]
    results = tmp_path / "r.jsonl"
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return log, results


def verify(log: Path, results: Path, *options: str) -> tuple[int, str, dict[str, Any]]:
    verdict = results.with_name("verdict.json")
    out = CliRunner().invoke(cli.app, ["verify", str(log), str(results), "--json",
                                       str(verdict), *options], env={"COLUMNS": "300"})
    return out.exit_code, out.output, orjson.loads(verdict.read_bytes())

"""`huimin check-fhir`: an integration tester's FHIR files checked offline as the platform's
ingress checks a 7001 publish — the real examples all taken, broken copies refused with the
code a publish would get and where, never a value from the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.publish import Unsendable, sendable
from settlement.treatment import MAX_REQUEST_BYTES
from tests.conftest import FHIR_DATA

FILES = sorted(FHIR_DATA.rglob("*.json"))


def check(*args: str):
    return CliRunner().invoke(cli.app, ["check-fhir", *args])


def test_every_real_example_and_synthea_bundle_would_be_taken():
    result = check(*map(str, FILES))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * len(FILES)
    assert any("Bundle (document, " in line for line in lines)
    assert lines[-1] == f"{len(FILES)} of {len(FILES)} files would be taken"


def test_broken_files_are_refused_with_the_code_and_where_but_no_value(tmp_path: Path):
    patient = json.loads(next(f for f in FILES if f.name == "Patient-example.json").read_text())
    secret_family = patient["name"][0]["family"]
    patient["birthDate"] = "1970-13-41"
    bad_patient = tmp_path / "patient.json"
    bad_patient.write_text(json.dumps(patient))
    not_json = tmp_path / "truncated.json"
    not_json.write_text('{"resourceType": "Patient", "name": [{"fam')
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"resourceType": "Basic", "id": "x" * MAX_REQUEST_BYTES}))
    long_id = tmp_path / "long-identifier.json"
    long_id.write_text(json.dumps({"resourceType": "Patient", "identifier": [
        {"system": "urn:x:scan", "value": secret_family * 500}]}))
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"resourceType": "Patient", "name": [{"family": "Müller"}]}'
                       .encode("latin-1"))
    utf16 = tmp_path / "utf16.json"
    utf16.write_text('{"resourceType": "Basic"}', encoding="utf-16")
    marked = tmp_path / "bom.json"
    marked.write_bytes(b"\xef\xbb\xbf" + b'{"resourceType": "Basic", "code": {"text": "x"}}')
    result = check(str(bad_patient), str(not_json), str(a_list), str(huge), str(long_id),
                   str(latin1), str(utf16), str(marked), "--json")
    assert result.exit_code == 1
    verdicts = [orjson.loads(line) for line in result.output.splitlines()]
    # the codes a publish would get: a list is refused by the request's schema, before FHIR
    assert [(v["ok"], v["code"]) for v in verdicts] == [
        (False, "E5001"), (False, "E1001"), (False, "E1002"), (False, "E1004"),
        (False, "E5001"), (False, "E1001"), (False, "E1001"), (True, None)]
    assert verdicts[0]["where"] == "Patient.birthDate"
    assert verdicts[4]["where"] == "Patient.identifier[0].value"
    assert verdicts[5]["what"] == "not UTF-8 (at byte offset 50): a request carries its " \
                                  "JSON in UTF-8"
    assert "UTF-16" in verdicts[6]["what"]
    assert "1970-13-41" not in result.output and secret_family not in result.output


@pytest.mark.parametrize(("text", "code", "what"), [
    # what a 7001 of it got from the platform (sent by another client, in a review)
    ('{"resourceType": "Basic", "extension": ' + "[" * 300 + "]" * 300 + "}", "E5001",
     "not valid FHIR R4: nested too deeply to check"),
    # not an object: the request's schema refuses it first
    ("[" * 300 + "]" * 300, "E1002", "not a JSON object"),
    # two levels short of what orjson writes, which the request's input.resource takes
    ('{"resourceType": "Basic", "extension": ' + "[" * 253 + "]" * 253 + "}", "E5001",
     "not valid FHIR R4: Basic.extension[0]"),
])
def test_a_file_nested_past_what_huimin_writes_is_told_as_the_platform_answers_it(
        tmp_path: Path, text: str, code: str, what: str):
    """The platform reads up to 1,024 levels (another client's JSON may nest past the 255
    orjson writes) and refuses these; `huimin publish` cannot send them at all."""
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    result = check(str(deep), "--json")
    assert result.exit_code == 1, result.output
    verdict = orjson.loads(result.output.splitlines()[0])
    assert (verdict["ok"], verdict["code"]) == (False, code)
    assert verdict["what"].startswith(what), verdict
    with pytest.raises(Unsendable):  # `huimin publish` does not send it
        sendable(deep)


def test_a_file_nested_past_what_the_platform_reads_is_not_json_to_it(tmp_path: Path):
    deep = tmp_path / "deeper.json"
    deep.write_text('{"resourceType": "Basic", "extension": ' + "[" * 1100 + "]" * 1100 + "}")
    verdict = orjson.loads(check(str(deep), "--json").output.splitlines()[0])
    assert (verdict["ok"], verdict["code"]) == (False, "E1001")
    assert verdict["what"].startswith("not JSON")


def test_a_folder_is_checked_file_by_file_and_an_empty_one_is_refused(tmp_path: Path):
    result = check(str(FHIR_DATA))
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == f"{len(FILES)} of {len(FILES)} files would be taken"
    empty = check(str(tmp_path))
    assert empty.exit_code == 2 and "no .json files" in empty.output


def test_the_text_report_says_where_and_counts_the_refused(tmp_path: Path):
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Basic", "code": {"text": "x"}}},
        {"resource": {"resourceType": "Nonsense"}}]}))
    result = check(str(FILES[0]), str(empty), str(bundle))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[2].endswith("unknown resourceType (at Bundle.entry[1].resource)"), lines
    assert lines[-1] == "1 of 3 files would be taken; 2 refused"


def test_a_folder_named_like_a_file_is_passed_over_and_a_pipe_is_refused_not_waited_on(
        tmp_path: Path):
    (tmp_path / "bundles.json").mkdir()  # a folder: once it stopped the whole scan
    (tmp_path / "bundles.json" / "patient.json").write_bytes(
        next(f for f in FILES if f.name == "Patient-example.json").read_bytes())
    result = check(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "1 of 1 files would be taken"
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    refused = check(str(pipe))
    assert refused.exit_code == 2 and "is not a regular file" in refused.output

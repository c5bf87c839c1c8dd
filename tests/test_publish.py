"""`huimin publish`'s requests: which hospital sends them, and their msgids."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli, cli_fhir
from huimin.publish import (
    Publish,
    Published,
    Unsendable,
    hospital_for,
    platform_hospitals,
    publish_requests,
    sendable,
)

HOSPITALS = platform_hospitals()
CERTNO = "110101199003071233"


def test_the_default_hospital_is_of_the_province_the_certno_names_and_a_named_one_is_checked():
    assert hospital_for(CERTNO, None, HOSPITALS).admdvs.startswith("11")
    assert hospital_for(CERTNO, "H32030000001", HOSPITALS).admdvs == "320300"
    with pytest.raises(ValueError, match="not one of the platform's hospitals"):
        hospital_for(CERTNO, "H99", HOSPITALS)
    with pytest.raises(ValueError, match="give --hospital"):
        hospital_for("990101199003071233", None, HOSPITALS)


def test_the_same_time_and_files_give_the_same_msgids_and_now_gives_new_ones():
    files = [(n, Path(name), {"resourceType": "Basic"}) for n, name in enumerate(("a.json",
                                                                                  "b.json"))]
    h = hospital_for(CERTNO, None, HOSPITALS)
    at = [p.msgid for p in publish_requests(files, h, "2026-12-10 10:00:00")]
    assert at == [p.msgid for p in publish_requests(files, h, "2026-12-10 10:00:00")]
    assert at == [f"{h.fixmedins_code}202612101000000001", f"{h.fixmedins_code}202612101000000002"]
    first = publish_requests(files, h, None)
    time.sleep(0.005)
    later = publish_requests(files, h, None)
    assert len({p.msgid for p in [*first, *later]}) == 4  # a run a moment later: its own
    assert all(p.request["input"] == {"resource": {"resourceType": "Basic"}} for p in first)
    assert {p.request["mdtrtarea_admvs"] for p in first} == {h.admdvs}


def test_a_file_no_request_could_carry_is_not_sendable(tmp_path: Path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"resourceType": "Basic", "extension": ' + "[" * 300 + "]" * 300 + "}")
    with pytest.raises(Unsendable):  # orjson writes 255 levels: the send would fail
        sendable(deep)
    marked = tmp_path / "bom.json"
    marked.write_bytes(b'\xef\xbb\xbf{"resourceType": "Basic"}')
    assert sendable(marked) == {"resourceType": "Basic"}
    null = tmp_path / "null.json"
    null.write_text("null")
    assert sendable(null) is None  # sent, as JSON that is not an object: the platform says so


def test_with_at_each_file_keeps_its_place_among_all_given_and_lines_come_in_their_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file not sent (not JSON) took no sequence number, so the files after it came under
    the numbers of the ones before: corrected and published again with the same --at, it
    was answered with another file's stored refusal, and a file already published was
    stored again (a review). Its line came last, out of the files' order. The platform's
    answers are stood in for: each file's msgid is what is checked."""
    (tmp_path / "a.json").write_text("not json")
    (tmp_path / "b.json").write_text("null")
    (tmp_path / "c.json").write_text('{"resourceType": "Patient", "id": "p1"}')
    sent: list[Publish] = []

    def answered(_where: str, _certno: str, publishes: list[Publish], *_: object
                 ) -> list[Published]:
        sent.extend(publishes)
        return [Published(p, {"infcode": -1, "err_code": "E1002", "err_msg": "stood in"})
                for p in publishes]

    monkeypatch.setattr(cli_fhir, "send_publishes", answered)
    monkeypatch.setattr(cli_fhir, "bootstrap_servers", lambda given: given)
    monkeypatch.setattr(cli_fhir, "platform_records", lambda *_: {})  # its topics there
    result = CliRunner().invoke(cli.app, ["publish", str(tmp_path), "--certno", CERTNO,
                                          "--at", "2026-12-10 10:00:00", "--json",
                                          "--bootstrap", "127.0.0.1:9"])
    assert result.exit_code == 1, result.output
    h = hospital_for(CERTNO, None, HOSPITALS)
    assert [(p.path.name, p.msgid) for p in sent] == [
        ("b.json", f"{h.fixmedins_code}202612101000000002"),
        ("c.json", f"{h.fixmedins_code}202612101000000003")]
    assert sent[0].request["input"] == {"resource": None}
    told = [orjson.loads(line) for line in result.output.splitlines()]
    assert [(Path(t["file"]).name, t["code"]) for t in told] == [
        ("a.json", "not sent"), ("b.json", "E1002"), ("c.json", "E1002")]


@pytest.mark.parametrize("code", ["E6001", "E6002"])
def test_publishes_refused_for_their_signatures_are_told_so_without_a_sign_in(
        code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`publish` sends no sign-in: its summary of a refused signature names the publishes (it
    named the replay's sign-in, a review found). The platform's answers are stood in for."""
    doc = tmp_path / "patient.json"
    doc.write_text('{"resourceType": "Patient", "id": "p1"}')

    def refused(_where: str, _certno: str, publishes: list[Publish], *_: object
                ) -> list[Published]:
        return [Published(p, {"infcode": -1, "err_code": code, "err_msg": "refused"})
                for p in publishes]

    monkeypatch.setattr(cli_fhir, "send_publishes", refused)
    monkeypatch.setattr(cli_fhir, "bootstrap_servers", lambda given: given)
    monkeypatch.setattr(cli_fhir, "platform_records", lambda *_: {})  # its topics there
    result = CliRunner().invoke(cli.app, ["publish", str(doc), "--certno", CERTNO,
                                          "--bootstrap", "127.0.0.1:9"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"{code}" in said and "these publishes" in said
    assert "sign-in" not in said and "no visit" not in said

"""`huimin publish`'s requests: which hospital sends them, and their msgids."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from huimin import cli, cli_fhir
from huimin.publish import (
    Publish,
    Published,
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
    files = [(Path(name), {"resourceType": "Basic"}) for name in ("a.json", "b.json")]
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
    assert sendable(deep) is None  # orjson writes 255 levels: the send would fail
    marked = tmp_path / "bom.json"
    marked.write_bytes(b'\xef\xbb\xbf{"resourceType": "Basic"}')
    assert sendable(marked) == {"resourceType": "Basic"}


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
    result = CliRunner().invoke(cli.app, ["publish", str(doc), "--certno", CERTNO,
                                          "--bootstrap", "127.0.0.1:9"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert f"{code}" in said and "these publishes" in said
    assert "sign-in" not in said and "no visit" not in said

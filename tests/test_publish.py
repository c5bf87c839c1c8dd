"""`huimin publish`'s requests: which hospital sends them, and their msgids."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from huimin.publish import hospital_for, platform_hospitals, publish_requests, sendable

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

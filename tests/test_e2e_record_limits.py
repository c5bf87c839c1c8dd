"""What a role would write past the size a Kafka record may hold is not attempted: the
request is answered with E9002 and kept in the dead-letter topic, and no row changes (a
producer failing on it after the event was taken would lose it). Over the real broker, with
the limit lowered (HUIMIN_MAX_RECORD_BYTES) so that a fee upload's answer passes it."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from huimin.local_platform import platform
from simulators.hospital import DeadLetterRecord, HospitalFleet
from simulators.world import WorldSpec, build_world
from streams.broker import broker
from tests import handmade
from tests.scraping import scrape, total

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=11, persons=200)
WORLD = build_world(SPEC)
T = "2026-12-10 10:00:00"


def test_an_answer_over_the_record_limit_is_refused_and_dead_lettered_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HUIMIN_MAX_RECORD_BYTES", "3000")  # inherited by the worker
    certno, e = next((c, e) for c, e in sorted(WORLD.ref.enrollments.items())
                     if e.province == "110000")
    h = next(h for h in WORLD.ref.hospitals.values() if h.province == "110000")
    code = next(iter(WORLD.ref.catalogues["110000"].entries))
    seq = iter(range(1, 100))

    def request(infno: str, inp: dict) -> tuple[str, dict]:
        return certno, handmade.request(infno, h, T, next(seq), inp, e.insuplc_admdvs)

    def fees(mdtrt_id: str, n: int) -> dict:
        return handmade.fee_input(e, mdtrt_id, T, [(f"{i + 1:04d}", code, 1, 100)
                                                   for i in range(n)])

    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, SPEC, 2, tmp_path) as ours:
        fleet = HospitalFleet(bootstrap)
        try:
            register = request("2201", handmade.register_input(e, T))
            (registered,) = fleet.exchange([register])[register[1]["msgid"]]
            mdtrt_id = registered["output"]["data"]["mdtrt_id"]
            small, large = request("2204", fees(mdtrt_id, 2)), request("2204", fees(mdtrt_id, 40))
            answers = fleet.exchange([large, small])
            (refused,), (accepted,) = answers[large[1]["msgid"]], answers[small[1]["msgid"]]
            assert accepted["infcode"] == 0
            assert (refused["infcode"], refused["err_code"]) == (-1, "E9002")
            assert "3,000" in refused["err_msg"]
            # the large upload changed nothing: the visit holds the small one's 200 fen only
            settle = request("2207", {
                "psn_no": e.psn_no, "mdtrt_cert_type": "02", "mdtrt_cert_no": certno,
                "med_type": "11", "medfee_sumamt": 200, "psn_setlway": "01",
                "mdtrt_id": mdtrt_id, "insutype": e.insutype, "acct_used_flag": "0"})
            (settled,) = fleet.exchange([settle])[settle[1]["msgid"]]
            assert settled["infcode"] == 0, settled
            deadline = time.monotonic() + 20
            letters: list[DeadLetterRecord] = []
            while not letters and time.monotonic() < deadline:
                letters = [d for d in fleet._poll_dead_letters() if d.error_code == "E9002"]
            assert [d.entry.source_topic for d in letters] == ["hosp.requests"]
            # the refused upload counts as what it sent, one E9002 answer: not also as the
            # answer it had built, and nothing is left in flight
            samples = scrape(f"http://127.0.0.1:{ours.workers[0].cfg.web_port}/metrics")
            counted = {outcome: total(samples, "huimin_answers_total", infno="2204",
                                      outcome=outcome) for outcome in ("ok", "E9002")}
            assert counted == {"ok": 1.0, "E9002": 1.0}
            assert total(samples, "huimin_in_flight_requests") == 0.0
            # answers on their way back still reach the hospital once the person's row is
            # too large to keep them: what they answer was done (here, 5206 queries; later
            # ones are refused at the door, the row being full)
            queries = [request("5206", {"psn_no": e.psn_no, "cum_ym": "202612"})
                       for _ in range(8)]
            answered = fleet.exchange(queries, timeout_s=30)
            assert [len(answered[q["msgid"]]) for _, q in queries] == [1] * 8
            codes = [a["err_code"] for _, q in queries for a in answered[q["msgid"]]]
            assert set(codes) <= {"", "E9002"}  # refused on the way in once the row is full
            assert "left as it was, the answer sent on" in (tmp_path / "worker-0.log"
                                                            ).read_text()
            # a request over the limit itself (here 3,000 bytes; ~1 MB a broker takes, in
            # life) is kept in part as an E1004 dead letter, not refused once more as E9002
            padded = request("1101", {"padding": "x" * 300_000})[1]
            del padded["fixmedins_code"]  # naming no one to answer (one that does is answered)
            fleet.producer.send("hosp.requests", key=certno.encode(),
                                value=orjson.dumps(padded))
            assert fleet.producer.flush(30) == 0
            deadline, letters = time.monotonic() + 30, []
            while not letters and time.monotonic() < deadline:
                letters = [d for d in fleet._poll_dead_letters() if d.error_code == "E1004"]
            [kept] = letters
            assert kept.key is not None
            assert len(kept.key) + len(kept.value) == 3_000  # the key counts too
            assert kept.entry.size == len(orjson.dumps(padded))
        finally:
            fleet.close()

"""Operations over the real broker: requests are authenticated (HMAC-SM3 over the exact
bytes; unsigned, forged, altered, signed for another hospital, or replayed after the
operating window: refused with a clear error and counted); `/metrics` on every worker moves
during a run with two workers sharing the partitions (results still equal the oracle), and no
label carries personal data. A worker joining mid-run is tested in test_e2e_faults.py."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from huimin.local_platform import platform
from messages.codec import encode
from messages.envelope import province_of
from messages.identity import CERTNO_SYSTEM
from messages.platform import wrap_answer
from messages.topics import (
    EHR_SOURCES,
    HOSP_REQUESTS,
    HOSP_RESPONSES,
    INS_REQUESTS,
    NAT_REQUESTS,
    RECON_REQUESTS,
    TRT_ANSWERS,
)
from messages.visitlog import make_msgid
from records.consent import consent_resource
from records.exchange import IndexRow, RecordsRow, ToNational
from records.gateway import ProvincialGateway
from records.national_index import NationalIndex
from settlement.ids import mdtrt_id_for
from settlement.insured import InsuredPlatform
from settlement.reference import DENY_CROSS_REGION, PERMIT
from settlement.treatment import Forward, TreatmentPlatform
from simulators.hospital import HospitalFleet
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world, world_tag
from streams.broker import broker, free_port
from streams.partitioner import key_partition
from tests.conftest import FHIR_DATA, huimin_command, processes_mentioning
from tests.handmade import (
    fee_input,
    person_info_input,
    register_input,
    request,
    settle_input,
)
from tests.scraping import scrape, total
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=9, persons=300)
WORLD = build_world(SPEC)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return orjson.loads(r.read())


def status_of(url: str) -> int:
    return answer_of(url)[0]


def status_of_unparsed(url: str) -> int:
    """The status of a GET whose answer is not JSON (a request the web server refused)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as refused:
        return refused.code


def answer_of(url: str) -> tuple[int, Any]:
    """The status and the JSON body of a GET, an error's included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as refused:
        return refused.code, orjson.loads(refused.read())


def worker_warnings(out: Path) -> str:
    """The workers' warnings and errors (rebalances, refetches), to read when a run failed."""
    lines = [f"{log.name}: {line}" for log in sorted(out.glob("worker-*.log"))
             for line in log.read_text(errors="replace").splitlines()
             if "WARNING" in line or "ERROR" in line or "rebalanced" in line]
    return "\n".join(["", "worker warnings:", *lines[-60:]])


#: the log of the platform_and_fleet worker, by the fixture
WORKER_LOG: dict[str, Path] = {}


@pytest.fixture(scope="module")
def platform_and_fleet(tmp_path_factory: pytest.TempPathFactory
                       ) -> Iterator[tuple[HospitalFleet, int]]:
    out = tmp_path_factory.mktemp("auth")
    with broker(out / "broker.log") as bootstrap, platform(bootstrap, SPEC, 4, out) as p:
        WORKER_LOG["path"] = p.workers[0].log_path
        fleet = HospitalFleet(bootstrap)
        try:
            yield fleet, p.workers[0].cfg.web_port
        finally:
            fleet.close()


def test_unsigned_forged_foreign_and_replayed_requests_are_refused(platform_and_fleet):
    fleet, web_port = platform_and_fleet
    seq = count(1)
    certno = sorted(WORLD.ref.enrollments)[0]
    mine, other = sorted(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)[:2]

    def person_info(inf_time: str, hospital: Any = mine) -> tuple[str, dict[str, Any]]:
        return certno, request("1101", hospital, inf_time, next(seq),
                               person_info_input(certno, inf_time))

    def answer(sent: tuple[str, dict[str, Any]], **how: Any) -> dict[str, Any]:
        (got,) = fleet.exchange([sent], timeout_s=60, **how)[sent[1]["msgid"]][:1]
        return got

    first = person_info("2026-12-01 09:00:00")
    assert answer(first)["infcode"] == 0
    unsigned = answer(person_info("2026-12-01 09:05:00"), signing="none")
    assert (unsigned["infcode"], unsigned["err_code"]) == (-1, "E6001")
    forged = answer(person_info("2026-12-01 09:10:00"), signing="forged")
    assert forged["err_code"] == "E6002"
    twice = answer(person_info("2026-12-01 09:12:00"), signing="twice")  # forged, then valid
    assert twice["err_code"] == "E6002" and "given more than once" in twice["err_msg"]
    for_another = answer(person_info("2026-12-01 09:15:00", hospital=other),
                         sign_as=mine.fixmedins_code)
    assert for_another["err_code"] == "E6002"  # a hospital cannot act for another
    assert answer(person_info("2026-12-11 09:00:00"))["infcode"] == 0  # ten days on
    replay = answer(first)  # the very same bytes and signature, from outside the window
    assert (replay["infcode"], replay["err_code"]) == (-1, "E6003")
    assert certno not in unsigned["err_msg"] + forged["err_msg"] + replay["err_msg"]
    metrics = scrape(f"http://127.0.0.1:{web_port}/metrics")
    for reason in ("E6001", "E6002"):
        assert total(metrics, "huimin_refused_requests_total", reason=reason) >= 1
    assert total(metrics, "huimin_answers_total", outcome="E6003") == 1


def test_a_duplicate_is_answered_and_counted_but_its_answer_is_not_timed(platform_and_fleet):
    """A duplicate, or a request redelivered after a rebalance, keeps its first record's
    time: timed again, its answer read as a wait of seconds that no hospital had."""
    fleet, web_port = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[4]
    hospital = min(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    inf_time = "2026-12-02 09:00:00"
    info = (certno, request("1101", hospital, inf_time, 1, person_info_input(certno, inf_time)))
    url = f"http://127.0.0.1:{web_port}/metrics"

    def answered_and_timed() -> tuple[float, float]:
        deadline = time.monotonic() + 60
        while True:
            try:
                now = scrape(url)
                break
            except OSError:  # the worker's web server is not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        return (total(now, "huimin_answers_total", infno="1101"),
                total(now, "huimin_request_latency_seconds_count", infno="1101"))

    answers_before, timed_before = answered_and_timed()
    (first,) = fleet.exchange([info])[info[1]["msgid"]][:1]
    (again,) = fleet.exchange([info])[info[1]["msgid"]][:1]
    assert first["infcode"] == 0 and again == first
    deadline = time.monotonic() + 20
    while (seen := answered_and_timed())[0] < answers_before + 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert seen == (answers_before + 2, timed_before + 1)
    # the answer given again says so in a header, its bytes the first's
    reader = KafkaConsumer(bootstrap_servers=fleet.bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=3_000)
    reader.assign([TopicPartition(HOSP_RESPONSES, p)
                   for p in reader.partitions_for_topic(HOSP_RESPONSES)])
    mine = [r for r in reader if orjson.loads(r.value)["ans"]["inf_refmsgid"]
            == info[1]["msgid"]]
    reader.close()
    assert [dict(r.headers).get("huimin-repeat") for r in mine] == [None, b"1"]
    assert orjson.loads(mine[0].value)["ans"] == orjson.loads(mine[1].value)["ans"]


def test_a_request_on_another_partition_than_its_keys_is_refused_saying_how_keys_go(
        platform_and_fleet):
    """A client placing keys as librdkafka does (crc32), not as Kafka's Java client
    (murmur2): its request would be decided without its person's rows, kept on the key's
    partition. Refused E1002, nothing read or written, saying how to place keys."""
    fleet, _ = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[5]
    hospital = min(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    inf_time = "2026-12-02 09:30:00"
    msgid = make_msgid(hospital.fixmedins_code, inf_time, 77)
    value = orjson.dumps(request("1101", hospital, inf_time, 77,
                                 person_info_input(certno, inf_time)))
    key = certno.encode()
    wrong = (key_partition(key, 4) + 1) % 4
    fleet.producer.send(HOSP_REQUESTS, key=key, value=value, partition=wrong,
                        headers=fleet.signer.headers(hospital.fixmedins_code, key, value))
    assert fleet.producer.flush(30) == 0
    deadline, answer = time.monotonic() + 60, None
    while answer is None and time.monotonic() < deadline:
        answer = next((m["ans"] for m in fleet._poll(200)
                       if m["ans"]["inf_refmsgid"] == msgid), None)
    assert answer is not None and answer["err_code"] == "E1002", answer
    assert f"its key's is {key_partition(key, 4)}" in answer["err_msg"]
    assert "murmur2" in answer["err_msg"] and certno not in answer["err_msg"]
    # nothing was decided for the person: the same request on its key's partition is
    # answered anew, not with that refusal
    (placed,) = fleet.exchange([(certno, orjson.loads(value))])[msgid][:1]
    assert placed["infcode"] == 0, placed


def test_a_request_with_a_header_key_that_is_not_utf8_is_answered_and_the_worker_lives_on(
        platform_and_fleet):
    """Kafka says a header key is UTF-8, but a client may write any bytes (librdkafka does).
    Such a record once crashed the worker's fetcher, on every restart: a poison pill."""
    fleet, _ = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[2]
    hospital = min(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)

    class RawKey(str):  # kafka-python encodes header keys itself: hand it the raw bytes
        def encode(self, *args: Any, **kwargs: Any) -> bytes:
            return b"\xff\xfe-sign"

    def info(inf_time: str, seq: int) -> tuple[str, dict[str, Any]]:
        return certno, request("1101", hospital, inf_time, seq,
                               person_info_input(certno, inf_time))

    signed = fleet.signer.headers_as
    fleet.signer.headers_as = lambda *a, **k: [*signed(*a, **k), (RawKey("x"), b"y")]
    try:
        odd = info("2026-12-02 08:00:00", 901)
        answers = fleet.exchange([odd], timeout_s=60)[odd[1]["msgid"]]
    finally:
        fleet.signer.headers_as = signed
    assert [a["infcode"] for a in answers] == [0]  # judged by its signature and content
    after = info("2026-12-02 08:05:00", 902)
    assert [a["infcode"] for a in fleet.exchange([after], timeout_s=60)[after[1]["msgid"]]] \
        == [0]


def test_dead_letters_lists_what_the_platform_kept_and_no_personal_data(platform_and_fleet):
    """`huimin dead-letters` over the real broker: a message that is not JSON, and one from an
    unknown hospital whose msgid is a person's certno, each kept with its code; neither's
    key or body is shown."""
    fleet, _ = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[1]
    stranger = "H99999999999"  # no such hospital: nobody to answer, so it is dead-lettered

    def listed() -> dict[tuple[int, int], dict[str, Any]]:
        proc = subprocess.run([huimin_command(), "dead-letters", "--bootstrap", fleet.bootstrap,
                               "--json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert certno not in proc.stdout + proc.stderr
        letters = [orjson.loads(line) for line in proc.stdout.splitlines()]
        return {(d["partition"], d["offset"]): d for d in letters}

    before = listed()
    fleet.producer.send(HOSP_REQUESTS, key=certno.encode(), value=f"not JSON {certno}".encode())
    fleet.producer.send(HOSP_REQUESTS, key=certno.encode(), value=orjson.dumps(
        {"infno": "1101", "msgid": certno, "fixmedins_code": stranger}))
    assert fleet.producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while len(mine := [d for at, d in listed().items() if at not in before]) < 2:
        assert time.monotonic() < deadline, f"not both dead-lettered: {mine}"
        time.sleep(1)
    assert sorted(d["error_code"] for d in mine) == ["E1001", "E1002"]
    assert {d["source_topic"] for d in mine} == {HOSP_REQUESTS}
    unanswerable = next(d for d in mine if d["error_code"] == "E1002")
    assert (unanswerable["infno"], unanswerable["fixmedins_code"]) == ("1101", stranger)
    assert unanswerable["msgid"] == ""  # not a msgid's shape
    text = subprocess.run([huimin_command(), "dead-letters", "--bootstrap", fleet.bootstrap,
                           "--code", "E1001"], capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and certno not in text.stdout
    assert re.search(r"^\d+ dead letters?: E1001 \d+; from hosp.requests \d+$", text.stdout,
                     re.MULTILINE), text.stdout


def test_garbage_on_an_internal_topic_is_bad_input_and_a_roles_failure_is_logged_where_it_was(
        platform_and_fleet):
    """Bytes that do not decode on nat.requests (written there by hand) are E1001, and JSON
    no role wrote there (a hospital's 3201 written to recon.requests, as an integrator did)
    E1002, not the platform's internal error (E9001 paged on-call as a failure of ours; the
    3201 was `internal error in reconciliation: KeyError`); a platform-shaped message a
    role fails on is E9001, and the worker's log names where the message is and where the
    role raised, never a value (the log said only `KeyError`)."""
    fleet, _ = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[2]
    hospital = sorted(WORLD.ref.hospitals)[0]
    msgid = make_msgid(hospital, "2026-12-01 09:00:00", 9_301)
    log = WORKER_LOG["path"]
    start = log.stat().st_size
    fleet.producer.send(NAT_REQUESTS, key=certno.encode(), value=f"junk {certno}".encode())
    fleet.producer.send(NAT_REQUESTS, key=certno.encode(), value=orjson.dumps(
        {"ctx": {"infno": "2207", "msgid": msgid, "fixmedins_code": hospital}, "trace": [],
         "req": {"x": certno}}))
    recon = {"infno": "3201", "msgid": make_msgid(hospital, "2026-12-01 09:00:00", 9_302),
             "fixmedins_code": hospital, "input": {"data": {}}}
    fleet.producer.send(RECON_REQUESTS, key=hospital.encode(), value=orjson.dumps(recon))
    assert fleet.producer.flush(30) == 0
    deadline = time.monotonic() + 60
    while "where it was raised" not in (text := log.read_text(errors="replace")[start:]) \
            or text.count("not a platform message") < 2:
        assert time.monotonic() < deadline, text
        time.sleep(0.5)
    # the junk's line, whichever of the two the worker read first (their agents are two:
    # the recon.requests one came first in a fresh clone's CI of 12-07)
    junk = next(line for line in text.splitlines() if "not a platform message (it does not "
                "decode)" in line)
    assert "WARNING" in junk and re.search(rf"\({NAT_REQUESTS}\[\d+\]@\d+\)", junk), junk
    misplaced = next(line for line in text.splitlines()
                     if "not a platform message (no ctx, trace and req" in line)
    assert "WARNING" in misplaced and "reconciliation:" in misplaced, misplaced
    assert f"goes to {HOSP_REQUESTS})" in misplaced, misplaced
    assert re.search(rf"dead-lettered {RECON_REQUESTS}\[\d+\]@\d+.*: E1002", text), text
    assert "internal error in reconciliation" not in text
    failure = next(line for line in text.splitlines() if "internal error in" in line)
    assert "ERROR" in failure and f"msgid {msgid}" in failure, failure
    assert re.search(rf"{NAT_REQUESTS}\[\d+\]@\d+", failure), failure
    assert "settlement_roles.py" in text  # the frame the role raised in
    assert certno not in text and certno[6:14] not in text


def test_a_local_request_reaches_the_insured_side_through_its_topic_and_a_cross_one_via_national(
        platform_and_fleet):
    """Local: treatment side, ins.requests, insured side, trt.answers — the insured side
    decides a redelivery from its own row and topic (docs/streams.md, Crashes and
    rebalances). Cross-province: the national platform in between, on the way there."""
    fleet, _ = platform_and_fleet
    certno = sorted(WORLD.ref.enrollments)[1]
    home = province_of(WORLD.ref.enrollments[certno].insuplc_admdvs)
    by_code = sorted(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    local = next(h for h in by_code if h.province == home)
    away = next(h for h in by_code if h.province != home)
    consumer = KafkaConsumer(bootstrap_servers=fleet.bootstrap)
    inner = [TopicPartition(t, p) for t in (INS_REQUESTS, TRT_ANSWERS, NAT_REQUESTS)
             for p in consumer.partitions_for_topic(t)]

    def written() -> Counter[str]:
        ends: Counter[str] = Counter()
        for tp, end in consumer.end_offsets(inner).items():
            ends[tp.topic] += end
        return ends

    try:
        for hospital, inf_time in ((local, "2026-12-02 09:00:00"), (away, "2026-12-02 10:00:00")):
            before = written()
            req = request("1101", hospital, inf_time, 1, person_info_input(certno, inf_time))
            (got,) = fleet.exchange([(certno, req)], timeout_s=60)[req["msgid"]][:1]
            assert got["infcode"] == 0, got
            moved = written() - before
            if hospital is local:
                assert moved == Counter({INS_REQUESTS: 1, TRT_ANSWERS: 1}), moved
            else:
                assert moved == Counter({NAT_REQUESTS: 1, INS_REQUESTS: 1, TRT_ANSWERS: 1})
    finally:
        consumer.close()


def test_a_duplicate_reconciliation_gets_its_original_answer_though_the_day_has_moved(
        platform_and_fleet):
    """DOMAIN.md §4, through the broker: a 3201 answered 平 for a hospital's day with nothing
    settled is answered 平 again when sent again (same msgid) after a settlement of that day,
    which a new 3201 of the same totals sees (不平)."""
    fleet, _ = platform_and_fleet
    seq = count(9_000)

    def nothing_settled(code: str, day: str) -> tuple[str, dict[str, Any]]:
        """A new 3201 of a hospital's day that claims no settlement."""
        inf_time = f"{day} 23:59:59"
        return code, {"infno": "3201", "msgid": make_msgid(code, inf_time, next(seq)),
                      "mdtrtarea_admvs": WORLD.ref.hospitals[code].admdvs,
                      "insuplc_admdvs": "", "fixmedins_code": code, "inf_time": inf_time,
                      "input": {"stmt_begndate": day, "stmt_enddate": day, "medfee_sumamt": 0,
                                "fund_pay_sumamt": 0, "acct_pay": 0, "fixmedins_setl_cnt": 0}}

    def answer(sent: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        (got,) = fleet.exchange([sent], timeout_s=60)[sent[1]["msgid"]][:1]
        assert got["infcode"] == 0, got
        return got

    for visit in generate_visits(WORLD, VisitSpec(visits=60, start="2026-12-20 08:00:00",
                                                  days=1)):
        first = nothing_settled(visit.fixmedins_code, visit.begntime[:10])
        original = answer(first)
        if original["output"]["stmt_rslt"] != "0":
            continue  # an earlier visit settled at this hospital that day
        (session,) = fleet.run([visit], [0.0]).sessions
        if session.settlement is not None:
            break
    else:
        pytest.fail("no visit of 60 ended settled")
    deadline = time.monotonic() + 60
    while (now := answer(nothing_settled(visit.fixmedins_code, visit.begntime[:10]))
           )["output"]["stmt_rslt"] == "0" and time.monotonic() < deadline:
        time.sleep(0.5)  # until clearing has the settlement's event
    assert now["output"]["differences"]["fixmedins_setl_cnt"] == 1, now
    assert answer(first) == original  # the duplicate: as first answered, not as now


def taken(bootstrap: str, topic: str, key: str, value: dict[str, Any]) -> None:
    """Put a platform message on `topic`, as the role before would, and wait until the
    worker has taken it (committed past it)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="huimin",
                             enable_auto_commit=False)
    try:
        sent = producer.send(topic, key=key.encode(), value=encode(value)).get(timeout=30)
        tp = TopicPartition(topic, sent.partition)
        deadline = time.monotonic() + 60
        while (consumer.committed(tp) or 0) <= sent.offset:
            assert time.monotonic() < deadline, f"the worker did not take it from {topic}"
            time.sleep(0.2)
    finally:
        producer.close()
        consumer.close()


def redelivery_waits(web_port: int, row: str, at_least: float = 0) -> float:
    """`huimin_redelivery_waits_total` of `row`, once it is `at_least`."""
    return eventually(f"{at_least} redelivery waits of {row}", lambda: total(
        scrape(f"http://127.0.0.1:{web_port}/metrics"), "huimin_redelivery_waits_total",
        row=row), lambda n: n >= at_least, timeout_s=20, every_s=0.3)


def a_visit_at_home(person: int, day: str) -> tuple[str, Any, Any, str, list[str]]:
    """The `person`-th certno, their enrollment, a hospital of their own province, a code of
    its catalogue, and four times a minute apart on `day`: a local visit to play by hand."""
    certno = sorted(WORLD.ref.enrollments)[person]
    e = WORLD.ref.enrollments[certno]
    hospital = min((h for h in WORLD.ref.hospitals.values() if h.province == e.province),
                   key=lambda h: h.fixmedins_code)
    code = next(iter(WORLD.ref.catalogues[hospital.province].entries))
    return certno, e, hospital, code, [f"{day} 09:0{m}:00" for m in range(4)]


def test_a_settlement_answer_read_before_the_fee_upload_it_settled_lets_the_upload_be_answered(
        platform_and_fleet):
    """What a worker restarted after a kill can see (docs/streams.md, Platform faults on
    Apache Kafka): the row lost its 2204 write, and the 2207's answer is read from
    `trt.answers` before the 2204 comes again from `hosp.requests`. Here the answer, as the
    insured side made it, is taken first; the 2204 then gets an OK answer, not E4002
    'already settled', the 2207 gets that answer, and the visit is settled from then on."""
    fleet, web_port = platform_and_fleet
    certno, e, hospital, code, (t0, t1, t2, t3) = a_visit_at_home(7, "2026-12-05")
    register = request("2201", hospital, t1, 1, register_input(e, t0), e.insuplc_admdvs)
    treatment, insured = TreatmentPlatform(WORLD.ref), InsuredPlatform(WORLD.ref)
    mdtrt_id = mdtrt_id_for(hospital.admdvs, e.psn_no, register["msgid"])
    upload = request("2204", hospital, t2, 2,
                     fee_input(e, mdtrt_id, t2, [("0001", code, 2, 1_250)]), e.insuplc_admdvs)
    settle = request("2207", hospital, t3, 3, settle_input(e, mdtrt_id, 2_500),
                     e.insuplc_admdvs)
    row = None
    for req in (register, upload):  # the platform's first time, played here
        _, row = treatment.handle_request(certno, encode(req), row)
    forward, _ = treatment.handle_request(certno, encode(settle), row)
    assert isinstance(forward, Forward) and forward.to == "insured", forward
    answer, _ = insured.handle(certno, None, forward.req, forward.ctx)
    assert answer["infcode"] == 0, answer

    (registered,) = fleet.exchange([(certno, register)])[register["msgid"]][:1]
    assert registered["output"]["data"]["mdtrt_id"] == mdtrt_id
    waits = redelivery_waits(web_port, "treatment")
    taken(fleet.bootstrap, TRT_ANSWERS, certno, wrap_answer(answer, forward.ctx, []))
    assert redelivery_waits(web_port, "treatment", waits + 1) == waits + 1  # ops see it
    (uploaded,) = fleet.exchange([(certno, upload)])[upload["msgid"]][:1]
    assert uploaded["infcode"] == 0, uploaded
    (settled,) = fleet.exchange([(certno, settle)])[settle["msgid"]][:1]
    assert settled == answer
    late = request("2204", hospital, t3, 4,
                   fee_input(e, mdtrt_id, t3, [("0002", code, 1, 100)]), e.insuplc_admdvs)
    (refused,) = fleet.exchange([(certno, late)])[late["msgid"]][:1]
    assert refused["err_code"] == "E4002", refused


def test_a_fee_upload_sent_before_the_settlement_was_answered_is_decided_after_that_answer(
        platform_and_fleet):
    """A hospital that sends a visit's 2204 right behind its 2207, without waiting for the
    settlement's answer: the upload is read while that answer is still on its way back, and
    is held in the person's row until it is read (as after a restart that read them in the
    other order: docs/streams.md). It is refused E4002, the visit being settled; taken at
    once, it would have been added to a settled visit."""
    fleet, web_port = platform_and_fleet
    certno, e, hospital, code, (t0, t1, t2, t3) = a_visit_at_home(11, "2026-12-06")
    register = request("2201", hospital, t1, 1, register_input(e, t0), e.insuplc_admdvs)
    mdtrt_id = mdtrt_id_for(hospital.admdvs, e.psn_no, register["msgid"])
    upload = request("2204", hospital, t2, 2,
                     fee_input(e, mdtrt_id, t2, [("0001", code, 2, 1_250)]), e.insuplc_admdvs)
    for req in (register, upload):
        (ans,) = fleet.exchange([(certno, req)])[req["msgid"]][:1]
        assert ans["infcode"] == 0, ans
    settle = request("2207", hospital, t3, 3, settle_input(e, mdtrt_id, 2_500),
                     e.insuplc_admdvs)
    late = request("2204", hospital, t3, 4,
                   fee_input(e, mdtrt_id, t3, [("0002", code, 1, 100)]), e.insuplc_admdvs)
    waits = redelivery_waits(web_port, "treatment")
    answers = fleet.exchange([(certno, settle), (certno, late)])  # sent together
    (settled,), (refused,) = answers[settle["msgid"]], answers[late["msgid"]]
    assert settled["infcode"] == 0, settled
    assert refused["err_code"] == "E4002", refused
    assert redelivery_waits(web_port, "treatment", waits + 1) == waits + 1  # it was held


def test_a_query_read_before_the_consent_it_was_asked_after_is_refused_once_that_comes_again(
        platform_and_fleet):
    """The health records' counterpart: the row lost a Consent's publish (7001) that denies
    other provinces, and the restarted worker takes a query asked since from `ehr.sources`
    before the publish comes again from `hosp.requests`. The query waits for it, and is
    refused as the first time; answered at once, it shared the record."""
    fleet, web_port = platform_and_fleet
    certno = next(c for c, e in sorted(WORLD.ref.enrollments.items())[10:]
                  if e.ehr_sharing == PERMIT)
    home = WORLD.ref.enrollments[certno].province
    by_code = sorted(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    mine = next(h for h in by_code if h.province == home)
    other = next(h for h in by_code if h.province != home)
    patient = orjson.loads((FHIR_DATA / "hl7-r4" / "Patient-example.json").read_bytes())
    patient["identifier"] = [{"system": CERTNO_SYSTEM, "value": certno}]
    t1, t2, t3 = (f"2026-12-06 09:0{m}:00" for m in range(1, 4))
    record = request("7001", mine, t1, 1, {"resource": patient})
    denial = request("7001", mine, t2, 2, {"resource": consent_resource(
        certno, DENY_CROSS_REGION, home)})
    find = request("7002", other, t3, 3, {"patient_identifier": f"{CERTNO_SYSTEM}|{certno}",
                                          "purpose": "TREAT"})
    treatment, gateway, index = TreatmentPlatform(WORLD.ref), ProvincialGateway(), NationalIndex()
    records, irow = RecordsRow(), IndexRow()
    for req in (record, denial, find):  # the platform's first time, played here
        forward, _ = treatment.handle_request(certno, encode(req), None)
        assert isinstance(forward, Forward) and forward.to == "ehr", forward
        steps, stored = gateway.handle(certno, forward.req, forward.ctx, records)
        records = stored or records
        for step in steps:
            if isinstance(step, ToNational):
                query, irow = index.handle(step.msg, irow)
                irow = irow or IndexRow()
    assert isinstance(query, dict) and query["docs_held"] == 2, query

    (published,) = fleet.exchange([(certno, record)])[record["msgid"]][:1]
    assert published["infcode"] == 0, published
    waits = redelivery_waits(web_port, "records")
    taken(fleet.bootstrap, EHR_SOURCES, certno, {**query, "trace": []})
    assert redelivery_waits(web_port, "records", waits + 1) == waits + 1
    responses = KafkaConsumer(bootstrap_servers=fleet.bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=100)
    tps = [TopicPartition(HOSP_RESPONSES, p)
           for p in responses.partitions_for_topic(HOSP_RESPONSES)]
    responses.assign(tps)
    responses.seek_to_beginning(*tps)
    try:
        (denied,) = fleet.exchange([(certno, denial)])[denial["msgid"]][:1]
        assert denied["infcode"] == 0, denied
        deadline, answers = time.monotonic() + 60, []
        while not answers:
            assert time.monotonic() < deadline, "the query was never answered"
            answers = [a for batch in responses.poll(200).values() for r in batch
                       if (a := orjson.loads(r.value)["ans"])["inf_refmsgid"] == find["msgid"]]
    finally:
        responses.close()
    assert answers[0]["err_code"] == "E5002", answers[0]  # decided by the denial
    assert certno not in answers[0]["err_msg"]


PERSONAL = (re.compile(r"\d{17}[\dX]"),  # a certno
            re.compile(r"\d{20,}"),  # a psn_no
            re.compile(r"[\u4e00-\u9fff]\*?"))  # a name (Chinese characters)


@dataclass
class TwoWorkerRun:
    """What `huimin run --workers 2` showed, sampled every 3 s while it ran: the workers' and
    the hospitals' scrapes, and, while settlements were answered, each worker's answer to
    the views."""
    out: Path
    returncode: int | None
    stdout: str
    certno: str  # the person whose records were searched
    scrapes: list[dict] = field(default_factory=list)  # the workers', summed
    hospital: list[dict] = field(default_factory=list)
    assignments: list[list[dict]] = field(default_factory=list)  # each worker's /assignment/
    clearing: list[list[int]] = field(default_factory=list)  # each one's GET /clearing/ status
    #: /assignment, /clearing, /ehr/stats and a search, each with no slash or an extra one
    typed: list[list[dict]] = field(default_factory=list)
    too_long: list[int] = field(default_factory=list)  # a search URL over 8,190 bytes
    records: list[list[tuple[int, Any]]] = field(default_factory=list)  # the person's search
    unknown: list[list[tuple[int, Any]]] = field(default_factory=list)  # a document nobody has


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory: pytest.TempPathFactory) -> TwoWorkerRun:
    out = tmp_path_factory.mktemp("two-workers") / "run"
    port = free_port()
    proc = subprocess.Popen(
        [huimin_command(), "run", "--persons", "800", "--visits", "200", "--rate", "20",
         "--seed", "13", "--workers", "2",
         "--metrics-port", str(port), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    certno = sorted(build_world(WorldSpec(seed=13, persons=800)).ref.enrollments)[0]
    run = TwoWorkerRun(out, None, "", certno)
    search = f"/fhir/DocumentReference?patient.identifier={CERTNO_SYSTEM}|{certno}"
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(3)
            try:
                workers = orjson.loads((out / "workers.json").read_bytes())
                merged: dict = {}
                for w in workers:
                    for k, v in scrape(w["metrics"]).items():
                        merged[k] = merged.get(k, 0) + v
                run.scrapes.append(merged)
                run.hospital.append(scrape(f"http://127.0.0.1:{port}/metrics"))
                if total(merged, "huimin_request_latency_seconds_count", infno="2207") > 0:
                    run.assignments.append([get_json(f"{w['web']}/assignment/")
                                            for w in workers])
                    run.clearing.append([status_of(f"{w['web']}/clearing/") for w in workers])
                    run.typed.append([{"assignment": get_json(f"{w['web']}/assignment"),
                                       "clearing": status_of(f"{w['web']}/clearing"),
                                       "ehr": get_json(f"{w['web']}/ehr/stats"),
                                       "search": status_of(w["web"] + search.replace("?", "/?"))}
                                      for w in workers])
                    run.records.append([answer_of(w["web"] + search) for w in workers])
                    run.unknown.append([answer_of(f"{w['web']}/fhir/Bundle/nobody-has-it")
                                        for w in workers])
                    if not run.too_long:
                        run.too_long.append(status_of_unparsed(
                            f"{workers[0]['web']}{search}&x={'A' * 9000}"))
            except (OSError, ValueError):
                continue
        run.stdout, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    run.returncode = proc.returncode
    return run


def test_a_run_with_two_workers_passes_and_its_metrics_move(two_worker_run: TwoWorkerRun):
    run, out = two_worker_run, two_worker_run.out
    assert run.returncode == 0, run.stdout + worker_warnings(out)
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["ok"] and summary["oracle"]["mismatches"] == []
    answering = [m for m in run.scrapes if total(m, "huimin_answers_total") > 0]
    assert len(answering) >= 2, run.stdout
    early, late = answering[0], answering[-1]
    assert total(late, "huimin_answers_total") > total(early, "huimin_answers_total")
    assert total(late, "huimin_request_latency_seconds_count", infno="2207") > 0
    assert total(late, "huimin_hop_latency_seconds_count") > 0
    assert total(late, "huimin_paid_fen_total", payer="fund") > 0
    assert total(late, "huimin_ehr_documents_published_total") > 0
    assert total(late, "faust_messages_received_total") > 0  # Faust's own sensor
    assert total(run.hospital[-1], "huimin_hospital_round_trip_seconds_count") > 0
    # the same workers as Prometheus file_sd targets, as the alert rules' job
    targets = orjson.loads((out / "targets.json").read_bytes())
    assert [(t["targets"], t["labels"]) for t in targets] == [
        ([w["web"].removeprefix("http://")], {"job": "huimin-workers", "worker": str(w["worker"])})
        for w in orjson.loads((out / "workers.json").read_bytes())]


def test_no_metric_label_of_the_workers_or_the_hospitals_carries_personal_data(
        two_worker_run: TwoWorkerRun):
    assert two_worker_run.scrapes and two_worker_run.hospital
    for samples in (*two_worker_run.scrapes, *two_worker_run.hospital):
        for _, labels in samples:
            for _, value in labels:
                assert not any(p.search(value) for p in PERSONAL), value


def test_two_workers_serve_the_requests_between_them_in_one_generation(
        two_worker_run: TwoWorkerRun):
    """Both had joined one consumer group before the visits began: while settlements were
    answered, the two served hosp.requests between them."""
    assert two_worker_run.assignments, two_worker_run.stdout
    for seen in two_worker_run.assignments:
        assert len({a["generation"] for a in seen}) == 1, seen
        assert sorted(p for a in seen for p in a["partitions"]) == list(range(8)), seen
        assert all(a["partitions"] for a in seen), seen
        assert sorted(a["national_clearing"] for a in seen) == [False, True], seen


def test_only_the_worker_holding_the_clearing_table_serves_its_statements(
        two_worker_run: TwoWorkerRun):
    """The other's copy would read as the platform's figures."""
    clearing = two_worker_run.clearing
    assert clearing and all(sorted(codes) == [200, 503] for codes in clearing), clearing


def test_the_views_answer_without_their_trailing_slash_and_a_search_with_one(
        two_worker_run: TwoWorkerRun):
    """A bare 404 read as no such view."""
    assert two_worker_run.typed, two_worker_run.stdout
    for seen in two_worker_run.typed:
        assert sorted(s["clearing"] for s in seen) == [200, 503], seen
        assert sorted(s["search"] for s in seen) == [200, 503], seen
        assert all(s["assignment"]["topic"] == "hosp.requests" for s in seen), seen
        assert all("operator_accesses_audited" in s["ehr"] for s in seen), seen


def test_a_persons_records_are_searched_on_the_worker_serving_them_and_audited(
        two_worker_run: TwoWorkerRun):
    """The other's answer is not an empty searchset (read as "no records") but a 503 naming
    the partition to ask for; each search is audited as the operator's, apart from the
    hospitals' accesses the oracle counts (so the run passed)."""
    run = two_worker_run
    summary = orjson.loads((run.out / "summary.json").read_bytes())
    assert summary["ehr"]["operator_audit_events"] >= len(run.records) > 0, summary["ehr"]
    for answers in run.records:
        (status, bundle), (refusal, outcome) = sorted(answers, key=lambda a: a[0])
        assert (status, refusal) == (200, 503), answers
        assert bundle["resourceType"] == "Bundle", bundle
        assert outcome["resourceType"] == "OperationOutcome", outcome
        assert "GET /assignment/" in outcome["issue"][0]["diagnostics"], outcome
        assert run.certno not in str(outcome), outcome


def test_a_url_too_long_for_the_web_server_is_refused_and_not_quoted_in_the_log(
        two_worker_run: TwoWorkerRun):
    """It held the person's citizen ID number."""
    assert two_worker_run.too_long == [400], two_worker_run.too_long
    logs = "".join(log.read_text(errors="replace")
                   for log in two_worker_run.out.glob("worker-*.log"))
    assert "Error handling request" in logs and "LineTooLong (its message is not" in logs
    assert two_worker_run.certno not in logs


def test_a_document_on_neither_worker_is_not_found_on_either_saying_where_each_looked(
        two_worker_run: TwoWorkerRun):
    assert two_worker_run.unknown, two_worker_run.stdout
    for answers in two_worker_run.unknown:
        assert [status for status, _ in answers] == [404, 404], answers
        assert all("ask the other workers" in o["issue"][0]["diagnostics"] for _, o in answers)


def test_the_workers_in_flight_is_what_the_hospitals_await(two_worker_run: TwoWorkerRun):
    """Counted up and down, a reconciliation answered by the other worker and each
    duplicate's second answer made the workers' sum drift from it without bound."""
    drift = [total(m, "huimin_in_flight_requests") -
             total(h, "huimin_hospital_in_flight_requests")
             for m, h in zip(two_worker_run.scrapes, two_worker_run.hospital, strict=False)]
    assert drift and max(drift) <= 10, drift


def test_a_worker_that_joins_later_is_waited_for_until_the_group_has_settled(tmp_path: Path):
    with broker(tmp_path / "broker.log") as bootstrap, platform(bootstrap, SPEC, 4, tmp_path) as p:
        p.wait_until_serving()
        [alone] = p.assignments()
        assert alone is not None and alone["partitions"] == [0, 1, 2, 3]
        # which world it settles by, for an operator to compare across workers
        assert alone["world"] == world_tag(SPEC)
        assert f"settling by the world of {world_tag(SPEC)}" in (
            tmp_path / "worker-0.log").read_text()
        p.add_worker()
        p.wait_until_serving()
        first, second = p.assignments()
    assert first is not None and second is not None
    assert second["generation"] == first["generation"] > alone["generation"]
    assert sorted(first["partitions"] + second["partitions"]) == [0, 1, 2, 3]
    assert first["partitions"] and second["partitions"]
    assert not first["rebalancing"] and not second["rebalancing"]


@pytest.mark.parametrize(("stop", "said"), [
    (signal.SIGTERM, ["terminated (SIGTERM): stopping what this command started",
                      "Stopped by SIGTERM: the broker and the workers this run started, if any, "
                      "are stopped. A run is judged whole, so there is no summary; its visit "
                      "log and the workers' logs are in"]),
    (signal.SIGINT, ["Stopped by Ctrl-C: the broker and the workers this run started, if any, "
                     "are stopped. A run is judged whole, so there is no summary; its visit "
                     "log and the workers' logs are in"]),
    # a SIGKILL (the out-of-memory killer, a CI runner's hard time-out) says nothing, and the
    # broker and workers it started stop all the same (streams/broker.py, stopped_with_parent)
    (signal.SIGKILL, []),
], ids=["SIGTERM", "Ctrl-C", "SIGKILL"])
def test_a_signal_stops_a_run_with_its_broker_and_workers_and_says_so(
        tmp_path: Path, stop: signal.Signals, said: list[str]):
    out, port = tmp_path / "run", free_port()
    proc = subprocess.Popen([huimin_command(), "run", "--persons", "500", "--visits", "2000",
                             "--rate", "10", "--no-ehr", "--metrics-port", str(port),
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            # a terminal's Ctrl-C: not ignored, as a CI job may start us
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (out / "workers.json").exists():  # the platform is up; visits under way
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.5)
        cmdlines = [Path(f"/proc/{pid}/cmdline").read_bytes()
                    for pid in processes_mentioning(str(out))]
        worker = next(c for c in cmdlines if b"streams.worker" in c)  # its config names it
        named = re.search(rb'"bootstrap":"([^"]+)"', worker)
        assert named is not None, worker
        bootstrap = named.group(1).decode()
        while total(scrape(f"http://127.0.0.1:{port}/metrics"),  # the visits have begun
                    "huimin_hospital_requests_sent_total") < 20:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.5)
        proc.send_signal(stop)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (-stop if stop == signal.SIGKILL else 128 + stop)
    if said:
        assert all(line in " ".join(stdout.split()) for line in said), stdout
    else:  # killed: no word of its own
        assert "Stopped by" not in stdout and "terminated (" not in stdout, stdout
    # the requests given up with the run are not warned of as failures, one by one
    assert "could not be delivered" not in stdout and "Traceback" not in stdout, stdout
    deadline = time.monotonic() + 30  # after a SIGKILL, each stops cleanly on its own
    while processes_mentioning(str(out)) or processes_mentioning(f"tcp://{bootstrap}"):
        assert time.monotonic() < deadline, (processes_mentioning(str(out)),
                                             processes_mentioning(f"tcp://{bootstrap}"))
        time.sleep(0.5)

"""Whom a role answers when it cannot handle a message, and what it may not write: pure parts
of streams/role.py's `RoleRunner` (its end-to-end behaviour: tests/test_e2e_record_limits.py)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from messages.codec import encode
from messages.codes import ErrorCode
from messages.platform import hospital_context, wrap_request
from streams.role import (
    MAX_RECORD_BYTES,
    MAX_RECORD_BYTES_ENV,
    REQUESTS_INWARD,
    max_record_bytes,
    oversized,
)
from tests.conftest import run_huimin

REQ = {"infno": "2207", "msgid": "H11010000001202612100900000001",
       "fixmedins_code": "H11010000001", "input": {}}


def test_a_hospital_request_names_whom_to_answer():
    assert hospital_context(encode(REQ), is_request=True) == {
        "infno": "2207", "msgid": REQ["msgid"], "fixmedins_code": REQ["fixmedins_code"]}


def test_a_platform_message_names_whom_to_answer_in_its_ctx():
    ctx = {k: REQ[k] for k in ("infno", "msgid", "fixmedins_code")} | {"route": "cross"}
    msg = encode(wrap_request(REQ, ctx, []))
    assert hospital_context(msg, is_request=False) == {k: ctx[k] for k in
                                                       ("infno", "msgid", "fixmedins_code")}


def test_messages_that_name_no_hospital_are_only_dead_lettered():
    for value, is_request in ((b"not json", True), (None, False), (encode({"op": "audit"}), False),
                              (encode({"setl_id": "X", "event": "settle"}), False),
                              (encode({**REQ, "msgid": 7}), True),
                              (encode({"ctx": {"msgid": "M", "fixmedins_code": ""}}), False),
                              (encode({"op": "register", "ctx": REQ}), False)):
        assert hospital_context(value, is_request) is None


def test_a_row_or_message_over_the_record_limit_is_named_before_anything_is_written():
    fits, big = b"x" * (MAX_RECORD_BYTES - 1), b"x" * MAX_RECORD_BYTES  # with a 1-byte key
    assert oversized([(None, b"k", fits, None)], [(None, b"k", fits)]) == ""
    assert oversized([(None, b"k", big, None)], []).startswith("an answer or message of")
    assert oversized([], [(None, b"k", big)]).startswith("a table row of")
    assert oversized([(None, b"k" * 500_000, b"v" * 400_001, None)], [])  # the key counts
    # each says what fills it: a reconciliation's answer, a person's answers of the window
    assert "a reconciliation over a shorter period" in oversized([(None, b"k", big, None)], [])
    person_row = oversized([], [(SimpleNamespace(name="trt_persons"), b"k", big)])
    assert "each hospital's of its last 7 days" in person_row and "reconciliation" not in person_row


def test_only_a_request_on_its_way_in_is_answered_when_its_role_fails():
    """An answer on its way back may answer something done (a settlement made): it is only
    dead-lettered, and the hospital's time-out and 2601 settle it."""
    from messages.platform import wrap_answer
    from streams.role import RoleRunner

    assert {"hosp.requests", "nat.requests", "ins.requests"} <= REQUESTS_INWARD
    run = RoleRunner(None, "hosp.responses", "dead.letters", {}, trt_answers="trt.answers")
    ctx = {k: REQ[k] for k in ("infno", "msgid", "fixmedins_code")} | {"route": "cross"}
    answer = {"infcode": 0, "inf_refmsgid": REQ["msgid"], "output": {}}
    for source in ("nat.answers", "trt.answers"):
        sends = run.failed(b"110101199003070000", encode(wrap_answer(answer, ctx, [])), source,
                           ErrorCode.INTERNAL_ERROR, "internal error in x")
        assert [s[0] for s in sends] == ["dead.letters"]


def test_a_repeated_answer_is_counted_but_not_timed_and_in_flight_is_counted_by_msgid():
    """A duplicate is forwarded twice and answered twice; a worker that took partitions in a
    rebalance answers what was redelivered to it, which it never forwarded. Counted up and
    down, in-flight climbed by one a duplicate and fell by one a redelivery, without bound;
    timed from the first record, a redelivery's answer read as a wait of seconds (p99 7.7 s
    while hospitals saw 0.45 s)."""
    import time

    from prometheus_client import REGISTRY

    from streams.metrics import FORWARDED
    from streams.role import RoleRunner

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    FORWARDED.forget()
    run = RoleRunner(None, "hosp.responses", "dead.letters", {})
    ctx = {"infno": "2207", "msgid": REQ["msgid"], "fixmedins_code": REQ["fixmedins_code"],
           "route": "cross"}
    answer = {"infcode": 0, "inf_refmsgid": REQ["msgid"], "output": {}}
    trace = [["trt.queued", time.time_ns() - 5_000_000_000]]
    answers = sample("huimin_answers_total", infno="2207", outcome="ok")
    timed = sample("huimin_request_latency_seconds_count", route="cross", infno="2207")
    FORWARDED.forwarded(REQ["msgid"])
    FORWARDED.forwarded(REQ["msgid"])  # its duplicate, forwarded before the first answer
    assert sample("huimin_in_flight_requests") == 1.0
    run.to_hospital(answer, ctx, trace)
    run.to_hospital(answer, ctx, trace, repeat=True)
    run.to_hospital(answer, ctx, trace, repeat=True)  # redelivered: never forwarded here
    for effect in run.effects:
        effect()
    assert sample("huimin_answers_total", infno="2207", outcome="ok") == answers + 3
    assert sample("huimin_request_latency_seconds_count", route="cross", infno="2207") == \
        timed + 1
    assert sample("huimin_in_flight_requests") == 0.0
    FORWARDED.forwarded("H11010000001202612100900000002")
    FORWARDED.forget()  # a rebalance: its answer may leave from another worker
    assert sample("huimin_in_flight_requests") == 0.0


def test_a_forward_that_fails_towards_the_insured_place_is_answered_back_through_trt_answers():
    """So the treatment row reads it as it reads every insured-side answer: kept for a
    duplicate, and the answer a request held behind it waits for (settlement/treatment_row.py,
    `queue_request`); it then answers the hospital. A hospital request's failure is answered at
    once."""
    from messages.codec import decode
    from streams.role import RoleRunner

    run = RoleRunner(None, "hosp.responses", "dead.letters", {}, trt_answers="trt.answers")
    ctx = {k: REQ[k] for k in ("infno", "msgid", "fixmedins_code")} | {
        "route": "cross", "mdtrt_id": "M1"}
    trace = [["trt.queued", 1], ["nat.in", 2]]
    for source in ("nat.requests", "ins.requests"):
        letter, back = run.failed(b"110101199003070000", encode(wrap_request(REQ, ctx, trace)),
                                  source, ErrorCode.INTERNAL_ERROR, "internal error in x")
        assert letter[0] == "dead.letters" and back[:2] == ("trt.answers", b"110101199003070000")
        msg = decode(back[2])
        assert msg["ctx"] == ctx and msg["trace"] == trace
        assert msg["ans"]["err_code"] == ErrorCode.INTERNAL_ERROR
        assert msg["ans"]["inf_refmsgid"] == REQ["msgid"]
    letter, answer = run.failed(b"110101199003070000", encode(REQ), "hosp.requests",
                                ErrorCode.INTERNAL_ERROR, "internal error in y")
    assert answer[0] == "hosp.responses"


def test_a_failed_forward_whose_context_outgrew_a_record_is_answered_back_with_its_name_only():
    """A platform message over the record limit is dead-lettered (kept in part); its answer
    back must not carry the same context again, or it could not be written either and the
    worker would stop on it at every restart."""
    from messages.codec import decode
    from streams.role import MAX_RECORD_BYTES, RoleRunner

    run = RoleRunner(None, "hosp.responses", "dead.letters", {}, trt_answers="trt.answers")
    ctx = {k: REQ[k] for k in ("infno", "msgid", "fixmedins_code")} | {
        "route": "local", "pad": "x" * MAX_RECORD_BYTES}
    _, back = run.failed(b"110101199003070000", encode(wrap_request(REQ, ctx, [])),
                         "ins.requests", ErrorCode.TOO_LARGE, "too large")
    assert back[0] == "trt.answers" and len(back[2]) < MAX_RECORD_BYTES
    msg = decode(back[2])
    assert msg["ans"]["inf_refmsgid"] == REQ["msgid"] and "pad" not in msg["ctx"]
    assert {k: msg["ctx"][k] for k in ("infno", "msgid", "fixmedins_code")} == {
        k: REQ[k] for k in ("infno", "msgid", "fixmedins_code")}


def test_a_failed_request_whose_msgid_holds_a_citizen_id_is_only_dead_lettered():
    """Its answer would echo the msgid onto the shared answer topic (`answerable_msgid`)."""
    from streams.role import RoleRunner

    run = RoleRunner(None, "hosp.responses", "dead.letters", {}, trt_answers="trt.answers")
    for msgid in ("11010519491231002X", "H11010000001" + "11010519491231002" + "9"):
        sends = run.failed(b"110101199003070000", encode({**REQ, "msgid": msgid}),
                           "hosp.requests", ErrorCode.INTERNAL_ERROR, "internal error in y")
        assert [s[0] for s in sends] == ["dead.letters"]


@pytest.mark.parametrize("given", ["1MB", "0", "-5", "999", "900001"])
def test_a_record_limit_that_is_not_bytes_in_range_is_refused_by_every_command(given: str):
    """It was read as the module was imported: `1MB` was a traceback from every command,
    `0` or `-5` refused every row and cut dead letters with negative bounds."""
    proc = run_huimin(["topics", "--bootstrap", "127.0.0.1:1"], timeout=60,
                      env={**os.environ, "HUIMIN_MAX_RECORD_BYTES": given})
    assert proc.returncode == 2, proc.stderr
    assert f"HUIMIN_MAX_RECORD_BYTES='{given}': bytes from 1,000 to 900,000" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_record_limit_in_range_is_taken(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(MAX_RECORD_BYTES_ENV, "3000")
    assert max_record_bytes() == 3000
    monkeypatch.delenv(MAX_RECORD_BYTES_ENV)
    assert max_record_bytes() == 900_000

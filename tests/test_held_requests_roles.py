"""The treatment side's held requests as its stream roles send them (streams/
settlement_roles.py), on stand-in topics and tables: a request held sends nothing; the
answer it waited for is sent on to the hospital and the request put back on hosp.requests
with its own headers; the same answer read again puts it back again (a crash may have lost
the copy); a request put back too often is given up and answered with an error. The pure
rules are in tests/test_treatment_platform.py, the broker in tests/test_e2e_operations.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import streams.settlement_roles as settlement_roles
from messages.codec import decode, encode, encode_to_keep
from messages.codes import ErrorCode
from messages.identity import holds_certno
from messages.platform import wrap_answer
from messages.signing import Signer
from settlement.treatment_row import MAX_PUT_BACKS, TreatmentRow
from streams.role import RoleRunner, Send
from streams.settlement_roles import SettlementRoles
from tests.handmade import (
    EMP_CERTNO,
    ENROLLMENTS,
    HOSP_BJ,
    fee_input,
    reference_data,
    register_input,
    request,
    settle_input,
)

E = ENROLLMENTS[EMP_CERTNO]
KEY = EMP_CERTNO.encode()
HEADERS = {"huimin-signtype": b"HMAC-SM3", "huimin-sign": b"c0ffee"}


def roles(signer: Signer | None = None) -> tuple[SettlementRoles, RoleRunner, Any]:
    names = ("hosp_requests nat_requests ins_requests nat_answers trt_answers hosp_responses "
             "dead_letters money_events recon_requests ehr_national ehr_sources ehr_audit")
    wiring = SimpleNamespace(**{n: n.replace("_", ".", 1) for n in names.split()},
                             **{t: SimpleNamespace(data={}) for t in (
                                 "trt_rows", "ins_rows", "ehr_index", "ehr_records",
                                 "clearing_events", "recon_answers")})
    run = RoleRunner(None, wiring.hosp_responses, wiring.dead_letters, {},
                     trt_answers=wiring.trt_answers)
    return SettlementRoles(run, wiring, reference_data(), signer, None), run, wiring  # type: ignore[arg-type]


def event(run: RoleRunner, sends: list[Send]) -> list[Send]:
    """What the agent does after a handler: make its writes."""
    for table, key, value in run.writes:
        table.data[key] = value
    run.writes.clear()
    run.effects.clear()
    return sends


def test_a_held_request_is_put_back_with_its_headers_once_its_answer_is_read_and_again():
    s, run, w = roles()
    reg = request("2201", HOSP_BJ, "2026-03-01 09:01:00", 1,
                  register_input(E, "2026-03-01 09:00:00"), E.insuplc_admdvs)
    (ans,) = event(run, s.on_hospital_request(KEY, encode(reg), HEADERS, None))
    mdtrt_id = decode(ans[2])["ans"]["output"]["data"]["mdtrt_id"]
    t2, t3 = "2026-03-01 09:10:00", "2026-03-01 09:15:00"
    fee = request("2204", HOSP_BJ, t2, 2, fee_input(E, mdtrt_id, t2, [("0001", "DA", 1, 100)]),
                  E.insuplc_admdvs)
    event(run, s.on_hospital_request(KEY, encode(fee), HEADERS, None))
    settle = request("2207", HOSP_BJ, t3, 3, settle_input(E, mdtrt_id, 100), E.insuplc_admdvs)
    (forward,) = event(run, s.on_hospital_request(KEY, encode(settle), HEADERS, None))
    assert forward[0] == "ins.requests"
    late = request("2204", HOSP_BJ, t3, 4, fee_input(E, mdtrt_id, t3, [("0002", "DA", 1, 9)]),
                   E.insuplc_admdvs)
    raw_late = encode(late)
    assert event(run, s.on_hospital_request(KEY, raw_late, HEADERS, None)) == []  # held

    ctx = decode(forward[2])["ctx"]
    answer = {"infcode": 0, "inf_refmsgid": settle["msgid"], "err_code": "", "err_msg": "",
              "output": {"setlinfo": {"mdtrt_id": mdtrt_id, "setl_id": "110100SETTLED"}}}
    message = encode(wrap_answer(answer, ctx, []))
    to_hospital, copy = event(run, s.on_treatment_answer(KEY, message))
    assert to_hospital[0] == "hosp.responses"
    assert copy == ("hosp.requests", KEY, raw_late, HEADERS)
    _, again = event(run, s.on_treatment_answer(KEY, message))  # read again after a crash
    assert again == copy

    (refused,) = event(run, s.on_hospital_request(KEY, raw_late, HEADERS, None))  # the copy
    assert decode(refused[2])["ans"]["err_code"] == ErrorCode.VISIT_ALREADY_SETTLED
    assert TreatmentRow.from_dict(decode(w.trt_rows.data[KEY])).held == []
    (repeat,) = event(run, s.on_hospital_request(KEY, raw_late, HEADERS, None))  # the second
    assert decode(repeat[2])["ans"] == decode(refused[2])["ans"]


def test_a_request_put_back_too_often_is_answered_with_an_error_and_leaves_the_queue():
    s, _, _ = roles()
    row = TreatmentRow(clocks={HOSP_BJ.fixmedins_code: "2026-03-01 00:00:00"})
    late = request("2204", HOSP_BJ, "2026-03-01 09:15:00", 4,
                   fee_input(E, "M1", "2026-03-01 09:15:00", [("0002", "DA", 1, 9)]),
                   E.insuplc_admdvs)
    row.held.append({"msgid": late["msgid"], "mdtrt_ids": ["M1"], "value": encode(late).decode(),
                     "headers": {}, "released": False, "since_ms": 1, "puts": MAX_PUT_BACKS})
    (answer,) = s._put_back(KEY, row)
    assert answer[0] == "hosp.responses"
    got = decode(answer[2])["ans"]
    assert got["inf_refmsgid"] == late["msgid"] and got["err_code"] == ErrorCode.INTERNAL_ERROR
    assert row.held == []


def test_a_request_on_another_partition_is_refused_as_one_on_its_own_would_be():
    """A request on another partition of hosp.requests than its key's: E1002 to a known
    hospital, read no further; not JSON, too large, or of no known hospital: dead-lettered
    as on its own partition (an unknown sender's words were answered onto the shared
    answer topic)."""
    from streams.partitioner import key_partition

    s, run, w = roles()
    run.app = SimpleNamespace(conf=SimpleNamespace(topic_partitions=4))
    run.partition = (key_partition(KEY, 4) + 1) % 4
    reg = request("2201", HOSP_BJ, "2026-03-01 09:01:00", 1,
                  register_input(E, "2026-03-01 09:00:00"), E.insuplc_admdvs)
    (ans,) = event(run, s.on_hospital_request(KEY, encode(reg), HEADERS, None))
    assert ans[0] == "hosp.responses"
    refusal = decode(ans[2])["ans"]
    assert refusal["err_code"] == ErrorCode.SCHEMA_VIOLATION and "murmur2" in refusal["err_msg"]
    assert KEY not in w.trt_rows.data  # nothing read or written for the person
    stranger = {**reg, "fixmedins_code": "Zhang San 11010519491231002X"}
    for value, code in ((encode(stranger), ErrorCode.SCHEMA_VIOLATION),
                        (b"not json", ErrorCode.MALFORMED_JSON),
                        (b" " * (300 * 1024), ErrorCode.MESSAGE_TOO_LARGE)):
        (letter,) = event(run, s.on_hospital_request(KEY, value, HEADERS, None))
        assert (letter[0], letter[3]["huimin-error-code"]) == ("dead.letters", code.encode())
    run.partition = key_partition(KEY, 4)  # on its own partition: registered
    (ok_ans,) = event(run, s.on_hospital_request(KEY, encode(reg), HEADERS, None))
    assert decode(ok_ans[2])["ans"]["infcode"] == 0


def test_an_answer_whose_row_would_be_over_a_record_with_its_key_is_sent_on_unkept(
        monkeypatch: Any) -> None:
    """The row's size is checked with its key, as the runner's `oversized` does: a row that
    fit alone and not with its key was put, and the runner then failed the whole event, so
    the hospital was never answered (a review)."""
    s, run, w = roles()
    reg = request("2201", HOSP_BJ, "2026-03-01 09:01:00", 1,
                  register_input(E, "2026-03-01 09:00:00"), E.insuplc_admdvs)
    (ans,) = event(run, s.on_hospital_request(KEY, encode(reg), HEADERS, None))
    mdtrt_id = decode(ans[2])["ans"]["output"]["data"]["mdtrt_id"]
    t2 = "2026-03-01 09:10:00"
    event(run, s.on_hospital_request(KEY, encode(request(
        "2204", HOSP_BJ, t2, 2, fee_input(E, mdtrt_id, t2, [("0001", "DA", 1, 100)]),
        E.insuplc_admdvs)), HEADERS, None))
    settle = request("2207", HOSP_BJ, t2, 3, settle_input(E, mdtrt_id, 100), E.insuplc_admdvs)
    (forward,) = event(run, s.on_hospital_request(KEY, encode(settle), HEADERS, None))
    ctx = decode(forward[2])["ctx"]
    answer = {"infcode": 0, "inf_refmsgid": settle["msgid"], "err_code": "", "err_msg": "",
              "output": {"setlinfo": {"mdtrt_id": mdtrt_id, "setl_id": "110100SETTLED"}}}
    kept = s.treatment.handle_answer(answer, ctx, TreatmentRow.from_dict(decode(
        w.trt_rows.data[KEY])))
    assert kept is not None
    monkeypatch.setattr(settlement_roles, "MAX_RECORD_BYTES",
                        len(encode_to_keep(kept.to_dict())) + len(KEY) - 1)
    row_before = w.trt_rows.data[KEY]
    sends = s.on_treatment_answer(KEY, encode(wrap_answer(answer, ctx, [])))
    assert [t for t, *_ in sends] == ["hosp.responses"]
    assert not run.writes and w.trt_rows.data[KEY] == row_before


def test_an_unsigned_request_whose_msgid_may_not_be_echoed_is_dead_lettered_not_taken():
    """The signature was checked only where the msgid could be echoed. A sender choosing its
    time and sequence so that an ID number can be read in the msgid sent unsigned as any
    hospital, and was taken (a review read a person's records so, and published to them)."""
    signer = Signer(b"a secret")
    s, run, w = roles(signer)
    t = "2026-12-07 01:23:19"  # with sequence 0: 120261207012319000 in the msgid's digits
    reg = request("2201", HOSP_BJ, t, 0, register_input(E, t), E.insuplc_admdvs)
    assert holds_certno(reg["msgid"])
    raw = encode(reg)
    for headers in ({}, dict(signer.headers_as("forged", HOSP_BJ.fixmedins_code, KEY, raw))):
        (dead,) = event(run, s.on_hospital_request(KEY, raw, headers, None))
        assert dead[0] == "dead.letters" and dead[3]["huimin-error-code"] in (b"E6001", b"E6002")
        assert reg["msgid"].encode() not in dead[3]["huimin-reason"]
        assert w.trt_rows.data == {}
    # signed, it is the hospital's: taken, as any request (its answer echoes the msgid)
    (answer,) = event(run, s.on_hospital_request(
        KEY, raw, dict(signer.headers(HOSP_BJ.fixmedins_code, KEY, raw)), None))
    assert answer[0] == "hosp.responses" and decode(answer[2])["ans"]["infcode"] == 0

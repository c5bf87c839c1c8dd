"""Authenticated requests (messages/signing.py) and replay protection (each hospital's clock
for a person, in the treatment-side row): what the provincial platform's ingress accepts and
refuses."""

from __future__ import annotations

from datetime import datetime, timedelta

from messages.codec import encode
from messages.codes import ErrorCode
from messages.signing import FOLD, SIGN_HEADER, Signer, fold_headers
from messages.visitlog import make_msgid
from settlement.oracle import Oracle
from settlement.retention import WINDOW_DAYS
from settlement.treatment import MAX_REQUEST_BYTES, Reply
from simulators.world import WorldSpec, build_world

WORLD = build_world(WorldSpec(seed=3, persons=200))
SIGNER = Signer(b"a secret")
HOSPITAL, OTHER = sorted(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)[:2]
CERTNO = sorted(WORLD.ref.enrollments)[0]


def person_info(inf_time: str, seq: int, hospital=HOSPITAL) -> dict:
    return {"infno": "1101", "msgid": make_msgid(hospital.fixmedins_code, inf_time, seq),
            "mdtrtarea_admvs": hospital.admdvs, "insuplc_admdvs": "",
            "fixmedins_code": hospital.fixmedins_code, "inf_time": inf_time,
            "input": {"mdtrt_cert_type": "02", "mdtrt_cert_no": CERTNO, "begntime": inf_time,
                      "psn_cert_type": "01", "certno": CERTNO}}


def check(headers: list | None, value: bytes, key: bytes = CERTNO.encode()):
    refusal = Oracle(WORLD.ref).treatment.authenticate(SIGNER, dict(headers or []), key, value)
    if refusal is None:
        return None
    assert isinstance(refusal, Reply)  # a refusal answered (these msgids may be echoed)
    return refusal.answer["err_code"]


def test_a_request_signed_by_its_sender_over_the_exact_bytes_passes():
    value = encode(person_info("2026-12-01 09:00:00", 1))
    assert check(SIGNER.headers(HOSPITAL.fixmedins_code, CERTNO.encode(), value), value) is None


def test_unsigned_forged_altered_and_foreign_signed_requests_are_refused():
    value = encode(person_info("2026-12-01 09:00:00", 1))
    key = CERTNO.encode()
    assert check(None, value) == "E6001"
    assert check(SIGNER.headers_as("forged", HOSPITAL.fixmedins_code, key, value), value) == \
        "E6002"
    signed = SIGNER.headers(HOSPITAL.fixmedins_code, key, value)
    assert check(signed, value.replace(b"09:00:00", b"09:00:01")) == "E6002"  # altered
    assert check(signed, value, key=sorted(WORLD.ref.enrollments)[1].encode()) == "E6002"
    foreign = encode(person_info("2026-12-01 09:00:00", 2, hospital=OTHER))
    assert check(SIGNER.headers(HOSPITAL.fixmedins_code, key, foreign), foreign) == "E6002"
    assert check(SIGNER.headers(OTHER.fixmedins_code, key, foreign), foreign) is None
    assert [len(v) for name, v in signed if name == SIGN_HEADER] == [64]  # SM3: 256 bits


def test_a_request_signed_twice_is_refused_whichever_signature_is_the_senders():
    """Kafka allows a header twice; a platform taking the last (as a dict of them would)
    accepted a forged signature followed by a valid one. The ambiguity is refused."""
    value = encode(person_info("2026-12-01 09:00:00", 1))
    key, sender = CERTNO.encode(), HOSPITAL.fixmedins_code
    twice = SIGNER.headers_as("twice", sender, key, value)
    assert [name for name, _ in twice].count(SIGN_HEADER) == 2
    assert twice[-1] == SIGNER.headers(sender, key, value)[-1]  # the sender's, last
    assert check(twice, value) is None  # taken, when the last one counts
    folded = fold_headers(twice)
    refusal = Oracle(WORLD.ref).treatment.authenticate(SIGNER, folded, key, value)
    assert refusal is not None and refusal.answer["err_code"] == ErrorCode.FORGED
    assert "huimin-sign or huimin-signtype is given more than once" in refusal.answer["err_msg"]
    valid = SIGNER.headers(sender, key, value)
    assert check([*valid, *valid], value) is None  # the same one twice: still one, by dict
    assert fold_headers([*valid, *valid])[SIGN_HEADER].count(FOLD) == 1  # refused folded
    assert fold_headers([("a", b"1"), ("a", b"2")]) == {"a": b"2"}  # others: the last


def test_a_request_over_the_size_limit_is_checked_for_its_signature_then_refused_e1004():
    """Answered now (E1004 to its sender), so its signature is checked first, as any
    answered refusal's: the platform echoes no msgid a forger chose."""
    oversize = {**person_info("2026-12-01 09:00:00", 1), "padding": "x" * MAX_REQUEST_BYTES}
    value = encode(oversize)
    assert check(None, value) == "E6001"
    assert check(SIGNER.headers(HOSPITAL.fixmedins_code, CERTNO.encode(), value), value) is None
    outcome, row = Oracle(WORLD.ref).treatment.handle_request(CERTNO, value, None)
    assert isinstance(outcome, Reply) and row is None
    assert outcome.answer["err_code"] == ErrorCode.MESSAGE_TOO_LARGE


def test_a_replay_from_before_the_window_is_refused_and_a_refusal_moves_the_clock():
    oracle = Oracle(WORLD.ref)
    first = person_info("2026-12-01 09:00:00", 1)
    assert oracle.submit(CERTNO, first)["infcode"] == 0
    assert oracle.submit(CERTNO, first)["infcode"] == 0  # a duplicate: its answer again
    refused = {**person_info("2026-12-12 09:00:00", 2), "input": {}}
    assert oracle.submit(CERTNO, refused)["err_code"] == "E1002"  # refused, and remembered
    replay = oracle.submit(CERTNO, first)  # eleven days on by the refusal: forgotten
    assert (replay["infcode"], replay["err_code"]) == (-1, "E6003")
    assert CERTNO not in replay["err_msg"]
    assert oracle.submit(CERTNO, refused)["err_code"] == "E1002"  # its own answer again
    assert oracle.submit(CERTNO, person_info("2026-12-06 09:00:00", 3))["infcode"] == 0


def test_a_hospital_refused_day_after_day_keeps_only_its_last_week_of_refusals():
    """A refusal is remembered (a redelivery gets it again), so it moves its hospital's clock
    as an accepted request does: else a hospital accepted once, then refused daily, kept
    every refusal, and the person's row outgrew a record (a review)."""
    oracle = Oracle(WORLD.ref)
    assert oracle.submit(CERTNO, person_info("2026-01-01 09:00:00", 1))["infcode"] == 0
    day = datetime(2026, 1, 2, 9)
    for n in range(2, 400):
        bad = {**person_info(day.strftime("%Y-%m-%d %H:%M:%S"), n), "input": {}}
        assert oracle.submit(CERTNO, bad)["err_code"] == "E1002"
        day += timedelta(days=1)
    assert len(oracle.treatment_rows[CERTNO].answers) <= WINDOW_DAYS + 1


def test_a_duplicate_is_recognised_or_refused_never_settled_anew_across_the_window_edge():
    """What the platform forgets and what it refuses as stale use the same cutoff: no gap in
    which a replay would be processed as new."""
    oracle = Oracle(WORLD.ref)
    first = person_info("2026-12-01 10:00:00", 1)
    original = oracle.submit(CERTNO, first)
    assert oracle.submit(CERTNO, person_info("2026-12-08 15:00:00", 2))["infcode"] == 0
    assert oracle.submit(CERTNO, first) == original  # still remembered: its own answer
    assert oracle.submit(CERTNO, person_info("2026-12-09 15:00:00", 3))["infcode"] == 0
    assert oracle.submit(CERTNO, first)["err_code"] == "E6003"  # forgotten: refused


def test_a_refused_request_forgets_nothing():
    oracle = Oracle(WORLD.ref)
    first = person_info("2026-12-01 10:00:00", 1)
    original = oracle.submit(CERTNO, first)
    stranger = {**person_info("2027-06-01 10:00:00", 2),
                "fixmedins_code": "H99999999999",
                "msgid": make_msgid("H99999999999", "2027-06-01 10:00:00", 2)}
    assert oracle.submit(CERTNO, stranger)["err_code"] == "E3001"
    assert oracle.submit(CERTNO, first) == original

"""Bad requests of every kind a platform must survive, each with the outcome it must get:
an answer with a given error code, or a place in the dead-letter topic when there is nobody to
answer. The expectations are written here by hand, independently of the platform's code."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from messages.codec import encode
from messages.codes import ErrorCode
from messages.identity import holds_certno
from messages.transactions import MAX_FEN
from messages.visitlog import TIME_FORMAT, make_msgid
from settlement.reference import Hospital
from settlement.treatment import MAX_REQUEST_BYTES
from simulators.world import World, make_certno, rng

#: Without a period, bad requests are timed just before the default visits' simulated period.
BAD_TIME = "2026-11-30 23:59:59"


@dataclass(frozen=True, slots=True)
class BadMessage:
    kind: str
    key: bytes | None
    value: bytes
    expect: Literal["answer", "dead-letter"]
    code: ErrorCode
    msgid: str = ""  # set when an answer is expected
    infno: str = ""
    sender: str = ""  # who signs it (messages/signing.py)
    signing: Literal["valid", "none", "forged"] = "valid"


def generate_bad_messages(world: World, per_kind: int = 1,
                          period: tuple[str, str] | None = None,
                          met: Collection[tuple[str, str]] = frozenset()) -> list[BadMessage]:
    """`per_kind` bad requests of every kind. Spread over `period` (the first and last visit
    times) as the hospitals spread them over the visits: each is dated where it is sent, as a
    real one would be (a request dated long before the person's last is refused as a replay).
    From hospitals that do not see their person in the visits (`met`: fixmedins_code and
    certno of each), where there is one: a hospital's refusal moves its clock for the person
    (settlement/treatment.py), which the oracle, settling the visits alone, cannot follow."""
    r = rng(world.spec.seed, "bad-messages")
    first = datetime.strptime(period[0] if period else BAD_TIME, TIME_FORMAT)
    span = (datetime.strptime(period[1], TIME_FORMAT) - first).total_seconds() if period else 0
    total = per_kind * len(KINDS)

    def when() -> str:
        """The time of the next bad request: (j + ½) / total of the way through the period."""
        t = first + timedelta(seconds=int((len(out) + 0.5) / total * span))
        return t.strftime(TIME_FORMAT)
    hospitals = sorted(world.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    persons = sorted(world.ref.enrollments)
    out: list[BadMessage] = []
    seq = 0

    def unmet(h: Hospital, certno: str) -> Hospital:
        """`h`, or if it sees `certno` in the visits one drawn from those that do not."""
        if (h.fixmedins_code, certno) not in met:
            return h
        return r.choice([x for x in hospitals if (x.fixmedins_code, certno) not in met]
                        or [h])

    def request(kind: str, infno: str, inp: dict[str, Any], code: ErrorCode, *,
                key: str | None = None, hospital_code: str | None = None,
                mdtrtarea: str | None = None, insuplc: str | None = None,
                certno: str | None = None, signing: str = "valid") -> None:
        nonlocal seq
        h = r.choice(hospitals)
        certno = certno or r.choice(persons)
        h = h if hospital_code else unmet(h, certno)
        e = world.ref.enrollments.get(certno)
        code_ = hospital_code or h.fixmedins_code
        inf_time = when()
        msgid = make_msgid(code_, inf_time, 9_000 + seq % 1_000)
        while holds_certno(msgid):
            # the platform echoes no msgid a citizen ID number can be read in: it keeps such
            # a request refused before it is read as a dead letter (messages/envelope.py),
            # where an answer is expected here (a replay's verdict failed on one, a review).
            # A second earlier: without a period, still before the visits' (BAD_TIME)
            earlier = datetime.strptime(inf_time, TIME_FORMAT) - timedelta(seconds=1)
            inf_time = earlier.strftime(TIME_FORMAT)
            msgid = make_msgid(code_, inf_time, 9_000 + seq % 1_000)
        seq += 1
        req = {"infno": infno, "msgid": msgid, "mdtrtarea_admvs": mdtrtarea or h.admdvs,
               "insuplc_admdvs": insuplc if insuplc is not None else
               (e.insuplc_admdvs if e else ""),
               "fixmedins_code": code_, "inf_time": inf_time,
               "input": _dated(inp, inf_time)}
        out.append(BadMessage(kind, (key or certno).encode(), encode(req), "answer", code, msgid,
                              infno, code_, signing))  # type: ignore[arg-type]

    def dead(kind: str, value: bytes, code: ErrorCode) -> None:
        out.append(BadMessage(kind, r.choice(persons).encode(), value, "dead-letter", code,
                              signing="none"))

    def person_info(certno: str) -> dict[str, Any]:
        return {"mdtrt_cert_type": "02", "mdtrt_cert_no": certno, "begntime": BAD_TIME,
                "psn_cert_type": "01", "certno": certno}

    def fee(certno: str, cnt: Any = 1, pric: Any = 100) -> dict[str, Any]:
        e = world.ref.enrollments[certno]
        amount = cnt * pric if isinstance(cnt, int) and isinstance(pric, int) else 100
        return {"feedetail": [{"feedetl_sn": "0001", "mdtrt_id": "NOSUCHVISIT",
                               "psn_no": e.psn_no, "fee_ocur_time": BAD_TIME,
                               "med_list_codg": "XD000001", "det_item_fee_sumamt": amount,
                               "cnt": cnt, "pric": pric}]}

    hospitals_seen = Counter(certno for _, certno in met)

    def unseen_at_some_hospital(k: int) -> str:
        """The k-th bad requests' person: one some hospital does not see in the visits,
        where there is one (a tiny world's few persons may have been everywhere)."""
        order = (persons[(k + j) % len(persons)] for j in range(len(persons)))
        return next((c for c in order if hospitals_seen[c] < len(hospitals)),
                    persons[k % len(persons)])

    for i in range(per_kind):
        c = unseen_at_some_hospital(i * 7919)
        e = world.ref.enrollments[c]
        dead("malformed-json", b'{"infno": "1101", "msgid": ', ErrorCode.MALFORMED_JSON)
        dead("not-an-object", b"[1101, 2201]", ErrorCode.MALFORMED_JSON)
        dead("oversize", encode({"infno": "2204", "padding": "x" * (MAX_REQUEST_BYTES + i)}),
             ErrorCode.MESSAGE_TOO_LARGE)
        dead("no-sender", encode({"infno": "1101", "input": {}}), ErrorCode.SCHEMA_VIOLATION)
        inp = person_info(c)
        del inp["certno"]
        request("missing-field", "1101", inp, ErrorCode.SCHEMA_VIOLATION, certno=c)
        request("extra-field", "1101", {**person_info(c), "remark": "x"},
                ErrorCode.SCHEMA_VIOLATION, certno=c)
        request("ill-typed", "2204", fee(c, cnt="2"), ErrorCode.SCHEMA_VIOLATION, certno=c)
        bad = c[:17] + ("0" if c[17] != "0" else "1")
        request("invalid-certno", "1101", person_info(bad), ErrorCode.INVALID_CERTNO, key=bad,
                certno=c)
        stranger = make_certno("110100", _birthday(r), 1 + 2 * (i % 400))
        while stranger in world.ref.enrollments:
            stranger = make_certno("110100", _birthday(r), 1 + 2 * r.randrange(400))
        request("unknown-person", "1101", person_info(stranger), ErrorCode.UNKNOWN_PERSON,
                key=stranger, certno=c)
        h = unmet(r.choice(hospitals), c)
        request("unknown-hospital", "1101", person_info(c), ErrorCode.UNKNOWN_HOSPITAL,
                hospital_code=f"H{h.admdvs}99999", mdtrtarea=h.admdvs, certno=c)
        request("unknown-region", "2201", _register(e.psn_no, e.insutype, c),
                ErrorCode.UNKNOWN_REGION, insuplc="990100", certno=c)
        other = next(x for x in hospitals if x.province != h.province)
        request("wrong-province", "1101", person_info(c), ErrorCode.WRONG_PROVINCE,
                hospital_code=h.fixmedins_code, mdtrtarea=other.admdvs, certno=c)
        request("settle-without-registration", "2207", {
            "psn_no": e.psn_no, "mdtrt_cert_type": "02", "mdtrt_cert_no": c, "med_type": "11",
            "medfee_sumamt": 100, "psn_setlway": "01", "mdtrt_id": "NOSUCHVISIT",
            "insutype": e.insutype, "acct_used_flag": "0"}, ErrorCode.UNKNOWN_VISIT, certno=c)
        request("non-positive-quantity", "2204", fee(c, cnt=0), ErrorCode.INVALID_AMOUNT,
                certno=c)
        request("amount-overflow", "2204", fee(c, pric=MAX_FEN + 1), ErrorCode.AMOUNT_OVERFLOW,
                certno=c)
        request("unsupported-infno", "9999", {}, ErrorCode.UNSUPPORTED_INFNO, certno=c)
        request("unsigned", "1101", person_info(c), ErrorCode.UNSIGNED, certno=c,
                signing="none")
        request("forged", "1101", person_info(c), ErrorCode.FORGED, certno=c, signing="forged")
    return out


def _dated(value: Any, inf_time: str) -> Any:
    """`value` with every BAD_TIME placeholder set to the request's time."""
    if isinstance(value, dict):
        return {k: _dated(v, inf_time) for k, v in value.items()}
    if isinstance(value, list):
        return [_dated(v, inf_time) for v in value]
    return inf_time if value == BAD_TIME else value


def _birthday(r: random.Random) -> date:
    return date(1950, 1, 1) + timedelta(days=r.randrange(0, 50 * 365))


def _register(psn_no: str, insutype: str, certno: str) -> dict[str, Any]:
    return {"psn_no": psn_no, "insutype": insutype, "begntime": BAD_TIME,
            "mdtrt_cert_type": "02", "mdtrt_cert_no": certno, "ipt_otp_no": "MZBAD",
            "med_type": "11"}


#: The most bad requests of each kind a run or a log may ask for: 18,000 in all, held in
#: memory until sent (a log header's 10⁹ once took 5.6 GB in 15 s).
MAX_BAD_PER_KIND = 1_000

KINDS = ("malformed-json", "not-an-object", "oversize", "no-sender", "missing-field",
         "extra-field", "ill-typed", "invalid-certno", "unknown-person", "unknown-hospital",
         "unknown-region", "wrong-province", "settle-without-registration",
         "non-positive-quantity", "amount-overflow", "unsupported-infno", "unsigned", "forged")

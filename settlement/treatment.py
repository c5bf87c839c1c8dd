"""The treatment-place platform (就医地): the hospital's only counterpart. It validates what
hospitals send, registers visits and stays, classifies fees with its own catalogue
(就医地目录), and forwards what the insured place computes (via the national platform when the
patient is insured in another province). It reverses its own transactions on 2601."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from messages.codec import MalformedMessage, decode
from messages.codes import (
    CANCELLATIONS,
    EHR,
    FEE_CANCELLATIONS,
    FEE_UPLOADS,
    INSURED_SIDE,
    PRESETTLEMENTS,
    RECONCILIATIONS,
    REGISTRATIONS,
    REVERSIBLE,
    SETTLEMENTS,
    ErrorCode,
    Infno,
)
from messages.envelope import (
    Request,
    answerable_msgid,
    error_answer,
    inf_time_stamp,
    is_cross_province,
    ok_answer,
    province_of,
)
from messages.identity import CERTNO_SYSTEM, is_valid_certno, mask_key, shown_id
from messages.platform import CROSS, LOCAL, infno_text
from messages.signing import Signer
from messages.transactions import ALL_FEES, INPUT_MODELS, PATTERNS_IN_WORDS
from settlement.catalogue import FeeTotals
from settlement.ids import mdtrt_id_for, sign_no_for
from settlement.reference import (
    Enrollment,
    Hospital,
    ReferenceData,
    agency_code,
    is_agency_code,
)
from settlement.retention import WINDOW_DAYS, cutoff, horizon, msgid_stamp
from settlement.reversals import TOO_FAR_AHEAD, ahead_of, in_advance, reversed_by
from settlement.treatment_row import (
    ANY_VISIT,
    CANCELLED,
    DISCHARGED,
    FULL,
    HELD,
    HELD_BYTES,
    INPATIENT,
    OPEN,
    OUTPATIENT,
    REVERSED,
    TAKEN,
    TreatmentRow,
    catch_up,
    fits,
    held_entry,
    holds_back,
    last_touched,
    queue_request,
    touch,
    touch_all,
    undone_in,
    unhold,
    visits_named,
)

#: Requests larger than this are not parsed: they are dead-lettered (E1004).
MAX_REQUEST_BYTES = 256 * 1024

#: The transactions that close a visit without money, reversible by 2601: what each leaves.
CLOSINGS = {Infno.OUTPATIENT_REGISTER_CANCEL: CANCELLED, Infno.INPATIENT_DISCHARGE: DISCHARGED}
#: What an insured-place answer's output holds (settlement/insured.py): a settlement, a
#: pre-settlement or a cancellation, a person's information, the accumulators. An answer
#: this row keeps with none of them was made by the treatment side itself.
INSURED_ANSWERS = frozenset({"setlinfo", "baseinfo", "cuminfo"})


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the hospital now; `repeat`: the answer it was given before for this msgid."""

    answer: dict[str, Any]
    ctx: dict[str, Any]
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """Send on towards the insured place: to the national platform, or straight to the
    insured-side role when the patient is insured in this province."""

    to: Literal["national", "insured", "reconciliation", "ehr"]
    req: dict[str, Any]
    ctx: dict[str, Any]
    #: a health-record request gone ahead of requests held in the person's row, so their
    #: hospital's clock not moved: the record sources do not move theirs for it either
    aside: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Cannot be answered (no usable sender): kept with the reason."""

    error_code: ErrorCode
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """Not answered yet: the request follows an answer the row has not read (a worker
    restarted reads its two topics each at its own pace); it is put on `hosp.requests` again
    once that is read (`TreatmentRow.due`)."""

    ctx: dict[str, Any]


Outcome = Reply | Forward | DeadLetter | Held


class Rejected(Exception):
    """A request refused with a stable error code; the message is safe to show (masked)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


#: A location part pydantic names (a field, a list index, a union's member such as
#: `list[int]`): ASCII, short, without the digit runs of an ID number or a phone number.
_FIELD = re.compile(r"(?!.*\d{6})[A-Za-z_][ -~]{0,79}")


UNKNOWN_FIELD = "(an unknown field)"


def _field_name(part: Any) -> str:
    """A location's part as the error names it; a key the sender made up (another person's
    certno, a name) is not echoed."""
    return str(part) if isinstance(part, int) or part == UNKNOWN_FIELD or \
        _FIELD.fullmatch(str(part)) else UNKNOWN_FIELD


def describe_validation_error(exc: ValidationError, prefix: str = "",
                              model: type[BaseModel] | None = None) -> str:
    """Where and what, without echoing input values (they may be personal). `model`: the
    one validated, whose bounds say what an amount out of range is."""
    parts = []
    for err in exc.errors()[:5]:
        where = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and where:  # named by the sender: not echoed
            where = (*where[:-1], UNKNOWN_FIELD)
        loc = ".".join(_field_name(p) for p in (prefix, *where) if p != "")
        said = PATTERNS_IN_WORDS.get(err.get("ctx", {}).get("pattern", ""), err["msg"])
        if err["type"] in ("dict_type", "model_type"):  # pydantic's words, and a class name
            said = "not a JSON object"
        elif err["type"] == "list_type":
            said = "not a JSON array"
        elif _past_json_integers(err):
            said = "over its limit (past a 64-bit integer, which JSON readers take as a decimal)"
        elif _below_json_integers(err):
            said = ("below its limit" if _may_be_negative(model, where) else
                    "not a positive amount") + " (below a 64-bit integer, which JSON readers " \
                "take as a decimal)"
        elif err["type"] == "less_than_equal" and where and where[-1] in _AMOUNT_FIELDS:
            said = f"over its limit: {err['ctx']['le']:,}" + (
                " fen" if where[-1] not in _COUNT_FIELDS else "")
        elif err["type"] in ("greater_than", "greater_than_equal") and where \
                and where[-1] in _AMOUNT_FIELDS:  # pydantic's "Input should be greater than 0"
            least = err["ctx"]["gt"] + 1 if err["type"] == "greater_than" else err["ctx"]["ge"]
            unit = " fen" if where[-1] not in _COUNT_FIELDS else ""
            said = f"below its limit: {least:,}{unit}" if least < 0 else (
                "negative" if least == 0 else "not positive") + f": it must be {least:,}{unit} " \
                "or more"
        parts.append(f"{loc or '<root>'}: {said}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


_COUNT_FIELDS = frozenset({"cnt", "fixmedins_setl_cnt", "setl_cnt"})
_AMOUNT_FIELDS = _COUNT_FIELDS | {"pric", "det_item_fee_sumamt", "medfee_sumamt",
                                  "fund_pay_sumamt", "acct_pay", "fund_appy_sum"}


def _past_json_integers(err: Any) -> bool:
    """An amount written as an integer past 2^63 (orjson reads past 2^64, and below -2^63, as
    a float, as most JSON readers do): over its limit, not 'not an integer'."""
    return bool(err["loc"]) and err["loc"][-1] in _AMOUNT_FIELDS \
        and err["type"] == "int_type" and isinstance(err.get("input"), float) \
        and err["input"] >= 2.0 ** 63


def _below_json_integers(err: Any) -> bool:
    """`_past_json_integers`, below -2^63."""
    return bool(err["loc"]) and err["loc"][-1] in _AMOUNT_FIELDS \
        and err["type"] == "int_type" and isinstance(err.get("input"), float) \
        and err["input"] <= -(2.0 ** 63)


def _may_be_negative(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> bool:
    """Whether the field at `loc` of `model` takes negative values: a period's net totals
    (3201, 3203) do, where cancellations outweigh settlements; an amount of one settlement,
    a price or a count does not."""
    field = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or (field := model.model_fields.get(str(part))) is None:
            return False
        inner = [t for t in (field.annotation, *get_args(field.annotation))
                 if isinstance(t, type) and issubclass(t, BaseModel)]
        model = inner[0] if inner else None
    bounds = [getattr(m, "ge", getattr(m, "gt", None)) for m in field.metadata] \
        if field is not None else []
    return any(b is not None and b < 0 for b in bounds)


def _code_for(exc: ValidationError, model: type[BaseModel] | None = None) -> ErrorCode:
    """Amounts out of range have codes of their own: under their least, not positive (E4006)
    or, for a net total that may be negative, below its limit (E4007, as past the top);
    anything else is a schema violation."""
    err = exc.errors()[0]
    where = tuple(err["loc"])
    if where and where[-1] in _AMOUNT_FIELDS:
        if err["type"] in ("greater_than", "greater_than_equal") or _below_json_integers(err):
            return ErrorCode.AMOUNT_OVERFLOW if _may_be_negative(model, where) \
                else ErrorCode.INVALID_AMOUNT
        if err["type"] == "less_than_equal" or _past_json_integers(err):
            return ErrorCode.AMOUNT_OVERFLOW
    return ErrorCode.SCHEMA_VIOLATION


def _validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Rejected(_code_for(exc, model),
                       describe_validation_error(exc, prefix, model)) from None


def _check_certificate(inp: Any, certno: str) -> None:
    """An ID number (02) or a social security card (03, whose number is the certno) must be
    the patient's valid certno (DOMAIN.md §1); a card comes with its serial where the
    transaction carries one (1101). An electronic voucher (01) is an opaque token."""
    cert_type = getattr(inp, "mdtrt_cert_type", "01")
    if cert_type == "01":
        return
    if inp.mdtrt_cert_no != certno:
        if not is_valid_certno(inp.mdtrt_cert_no):
            raise Rejected(ErrorCode.INVALID_CERTNO, f"input.mdtrt_cert_no is not a valid "
                           f"citizen ID number (mdtrt_cert_type {cert_type})")
        raise Rejected(ErrorCode.PERSON_MISMATCH, "input.mdtrt_cert_no is not the message "
                                                  "key's certno")
    if cert_type == "03" and getattr(inp, "card_sn", None) == "":
        raise Rejected(ErrorCode.SCHEMA_VIOLATION,
                       "input.card_sn: required with mdtrt_cert_type 03 (social security card)")


def _check_period_is_over(req: Request, inp: Any) -> None:
    """A hospital reconciles days up to the request's own (3201/3202, sent as a day
    closes), an agency applies for the clearing of a month that is over (3203): what is not
    over yet would be answered with figures that still change."""
    if req.infno == Infno.CLEARING_APPLICATION:
        if inp.clr_ym >= req.inf_time[:7].replace("-", ""):
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"clr_ym {inp.clr_ym} is not over at "
                           f"{req.inf_time}: apply for a month's clearing once it has ended")
    elif inp.stmt_enddate > req.inf_time[:10]:
        raise Rejected(ErrorCode.WRONG_SEQUENCE, f"stmt_enddate {inp.stmt_enddate} is after "
                       f"the request's day ({req.inf_time[:10]}): days not yet over cannot be "
                       "reconciled")


def _checked(req: Request, inp: BaseModel) -> dict[str, Any]:
    """The request as forwarded: its input as validated (defaults filled in, strict types),
    not as sent, so that the roles after this one read only what was checked."""
    return {**req.model_dump(exclude={"input"}), "input": inp.model_dump()}


class TreatmentPlatform:
    """Pure handler of hospital requests and of answers coming back from the insured place."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref
        #: the cities the platform knows, its hospitals': where an agency may say it is
        self.cities = frozenset(h.admdvs for h in ref.hospitals.values())

    # -- hospital requests ------------------------------------------------------------------
    def handle_request(self, key: str | None, raw: bytes | None, row: TreatmentRow | None,
                       headers: Mapping[str, bytes] | None = None, now_ms: int = 0
                       ) -> tuple[Outcome, TreatmentRow | None]:
        """Validate and act on one hospital request keyed by the patient's certno. `headers`:
        the record's, kept with the request if it is held back (`Held`), to be put back with
        it; `now_ms`: the wall clock, noted with it (treatment_row.HOLD_LIMIT_MS)."""
        if raw is not None and len(raw) > MAX_REQUEST_BYTES:
            return self.too_large(raw), None
        try:
            data = decode(raw)
        except MalformedMessage as exc:
            return DeadLetter(ErrorCode.MALFORMED_JSON, str(exc)), None
        try:
            req = _validate(Request, data)
        except Rejected as exc:
            if (ctx := self._answerable(data)) is not None:
                return Reply(error_answer(ctx["msgid"], exc.code, str(exc)), ctx), None
            return DeadLetter(exc.code, f"unanswerable request: {exc}"), None
        ctx = {"infno": req.infno, "msgid": req.msgid, "fixmedins_code": req.fixmedins_code,
               "mdtrtarea_admvs": req.mdtrtarea_admvs, "insuplc_admdvs": req.insuplc_admdvs}
        # rows exist only for real persons, and clocks only for their hospitals' transactions
        # (a sign-in, a reconciliation or an agency's request keyed by a certno touches none)
        keep = key is not None and is_valid_certno(key) and not (
            req.infno == Infno.SIGN_IN or req.infno in RECONCILIATIONS
            or is_agency_code(req.fixmedins_code))
        row = row if row is not None else TreatmentRow()
        seen = row.answers.get(req.msgid)
        if seen is not None:
            # a held request answered otherwise (its own answer read before its copy came
            # back, a duplicate of it answered) leaves the queue, else it would hold it
            return Reply(seen, ctx, repeat=True), row if unhold(row, req.msgid) else None
        if stale := row.stale(req.fixmedins_code, req.inf_time):
            return Reply(error_answer(req.msgid, ErrorCode.STALE, (
                f"inf_time {req.inf_time} is {stale}: refused as a replay")), ctx), \
                row if unhold(row, req.msgid) else None
        caught = False
        named = visits_named(data) | ({ANY_VISIT} if req.infno in INSURED_SIDE
                                      or req.infno == Infno.REVERSAL else set())
        # a 7001–7004 goes ahead of what is held: nothing of it is decided here from the
        # visits, and the record exchange keeps its own order and answers. Held, a copy of
        # one answered before a kill (this row keeps no record answers) was put back and
        # answered again each time, and could be given up (E9001) or refused for the held
        # bytes (E9002) where its first answer was the publish's (CI of 12-07). It leaves
        # the clock and the settlements as they are: moved or made due by it, they would
        # judge those held, sent before it, otherwise than the first time. The row is
        # written all the same while requests are held, so that their time limits are
        # checked on it (`TreatmentRow.due`), as on every message that changes it
        aside = req.infno in EHR and holds_back(row, req.msgid, named)
        if aside:
            # a copy a huimin of before 12-07 held leaves the queue
            caught = unhold(row, req.msgid) or bool(row.held)
        elif row.pending or row.held:
            assert raw is not None  # decoded above
            queued = queue_request(row, req.msgid, named, raw, headers or {}, now_ms)
            if queued == HELD:
                return Held(ctx), row
            if queued == FULL:  # not kept: the same msgid sent again is decided anew
                return Reply(error_answer(req.msgid, ErrorCode.TOO_LARGE, (
                    f"the requests held for this person, waiting for answers they follow, "
                    f"would be over {HELD_BYTES:,} bytes with this one: refused, not kept; "
                    "send it again once those are answered")), ctx), None
            caught = queued == TAKEN
        # a settlement waiting for its visit is due once the hospital has sent a request
        # after it (one that goes ahead): the hospital had its answer by then (and what came
        # before is done)
        caught = (bool(row.settling) and not aside and catch_up(row, req.msgid)) or caught
        clock = row.clock(req.fixmedins_code)
        new_day = keep and not aside and \
            req.inf_time[:10] > row.clocks.get(req.fixmedins_code, "")[:10]
        before = row
        if new_day:  # the hospital's clock, by the day: one row write a day at most
            row = row.copy()
            row.clocks[req.fixmedins_code] = req.inf_time[:10] + " 00:00:00"
            row.forget_stale(req.fixmedins_code)
        try:
            if (by := reversed_by(row.reversed, req.msgid, req.infno)) is not None:
                raise Rejected(ErrorCode.REVERSED, f"msgid {req.msgid} was reversed in advance "
                                                   f"by 2601 {by}")
            outcome, changed = self._dispatch(key, req, ctx, row)
            if changed is not None and (noted := changed.pending.get(req.msgid)) is not None \
                    and not noted[1]:
                noted[1] = now_ms  # when it was forwarded (`TreatmentRow.due`)
            if changed is not None and changed.settling:
                catch_up(changed)
            if aside and isinstance(outcome, Forward):
                outcome = replace(outcome, aside=True)
            return outcome, row if changed is None and (new_day or caught) else changed
        except Rejected as exc:
            if req.msgid in before.pending and raw is not None and fits(before, raw):
                # a copy of a request forwarded and not yet answered, which the visit as it is
                # now would refuse: its answer is on its way, and the copy waits for it, to be
                # told the same (`TreatmentRow.due` holds it until then), not refused in its place
                before.held.append(held_entry(req.msgid, set(), raw, headers or {}, now_ms))
                return Held(ctx), before
            answer = error_answer(req.msgid, exc.code, str(exc))
            if keep and clock and req.fixmedins_code in self.ref.hospitals:
                # remembered, so that a duplicate or a redelivery gets this very answer even
                # once the visit has moved on; and it moves the hospital's clock as an
                # accepted request does (`row`), so that it is forgotten in its turn: a
                # hospital refused day after day kept every refusal (a review). It starts no
                # row: what no request was accepted from the hospital for, for the person,
                # keeps nothing. Only a designated hospital's: a code of no hospital (never
                # authenticated) found a clock in a row of before 12-05, and two dated far
                # ahead moved the person's horizon past every real hospital's part
                row.answers[req.msgid] = answer
                return Reply(answer, ctx), row
            return Reply(answer, ctx), before if caught else None

    def authenticate(self, signer: Signer, headers: Mapping[str, bytes], key: bytes | None,
                     raw: bytes | None) -> Reply | DeadLetter | None:
        """The ingress check of a known sender's signature over the bytes it sent (see
        messages/signing.py): a refusal to answer, one to keep as a dead letter where the
        msgid may not be echoed, or None to go on. Every request naming a known sender is
        checked, whatever its msgid: one not fit to echo was let through unsigned. What
        names no known sender is left to `handle_request` (dead-lettered, or refused as
        unknown)."""
        try:
            data = decode(raw)
        except MalformedMessage:
            return None
        code = data.get("fixmedins_code")
        if not (isinstance(code, str) and self.known_sender(code)):
            return None
        problem = signer.check(code, headers, key, raw or b"")
        if problem is None:
            return None
        if (ctx := self._answerable(data)) is None:
            return DeadLetter(problem[0], f"{problem[1]} (a msgid not fit to echo: not "
                                          "answered)")
        return Reply(error_answer(ctx["msgid"], problem[0], problem[1]), ctx)

    def known_sender(self, code: str) -> bool:
        return code in self.ref.hospitals or (is_agency_code(code) and
                                              code[1:7] in self.ref.provinces)

    def too_large(self, raw: bytes) -> Reply | DeadLetter:
        """A request over MAX_REQUEST_BYTES, read for its envelope only (the broker bounds it
        at ~1 MB, a millisecond to read): answered E1004 where it names whom to answer, as an
        HTTP gateway answers 413, so its visit learns of it at once; else a dead letter."""
        reason = f"request of {len(raw):,} bytes is over the limit of {MAX_REQUEST_BYTES:,}"
        try:
            ctx = self._answerable(decode(raw))
        except MalformedMessage:
            ctx = None
        if ctx is not None:
            return Reply(error_answer(ctx["msgid"], ErrorCode.MESSAGE_TOO_LARGE, reason), ctx)
        return DeadLetter(ErrorCode.MESSAGE_TOO_LARGE, reason)

    def _answerable(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """Whom to answer, before a request is read as valid: a known sender's own msgid
        (one that does not echo a citizen ID); None if it names no one to answer."""
        code, msgid = data.get("fixmedins_code"), data.get("msgid")
        if not (isinstance(code, str) and answerable_msgid(msgid) and self.known_sender(code)):
            return None
        return {"infno": infno_text(data.get("infno")), "msgid": msgid, "fixmedins_code": code}

    def _dispatch(self, key: str | None, req: Request, ctx: dict[str, Any],
                  row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        if req.infno == Infno.CLEARING_APPLICATION or is_agency_code(req.fixmedins_code):
            return self._agency_request(req, ctx)
        hospital = self.ref.hospitals.get(req.fixmedins_code)
        if hospital is None:
            raise Rejected(ErrorCode.UNKNOWN_HOSPITAL,
                           f"fixmedins_code {req.fixmedins_code} is not a designated institution")
        if req.mdtrtarea_admvs != hospital.admdvs:  # its city: 就医地 is where it stands
            raise Rejected(ErrorCode.WRONG_PROVINCE,
                           f"hospital {req.fixmedins_code} is in {hospital.admdvs}, "
                           f"not in mdtrtarea_admvs {req.mdtrtarea_admvs}")
        model = INPUT_MODELS.get(req.infno)
        if model is None:
            raise Rejected(ErrorCode.UNSUPPORTED_INFNO, f"infno {req.infno} is not supported")
        inp = _validate(model, req.input, "input")
        if req.infno == Infno.SIGN_IN:  # keyed by the hospital, touches no person
            return Reply(ok_answer(req.msgid, {"signinoutb": {
                "sign_time": req.inf_time, "sign_no": sign_no_for(req.msgid)}}), ctx), None
        if req.infno in RECONCILIATIONS:  # keyed by the hospital, answered from its events
            _check_period_is_over(req, inp)
            ctx["route"] = "recon"
            return Forward("reconciliation", _checked(req, inp), ctx), None
        certno = key or ""
        if not is_valid_certno(certno):
            raise Rejected(ErrorCode.INVALID_CERTNO,
                           f"message key {mask_key(certno)} is not a valid citizen ID number")
        _check_certificate(inp, certno)
        ctx["hosp_lv"] = hospital.level
        if req.infno in EHR:  # to the health-record exchange (records/exchange.py)
            if req.infno == Infno.EHR_FIND and \
                    inp.patient_identifier != f"{CERTNO_SYSTEM}|{certno}":
                raise Rejected(ErrorCode.PERSON_MISMATCH,
                               "input.patient_identifier is not the message key's certno")
            ctx["route"] = "ehr"
            return Forward("ehr", _checked(req, inp), ctx), None
        if req.infno == Infno.PERSON_INFO:
            if inp.certno != certno:
                raise Rejected(ErrorCode.PERSON_MISMATCH,
                               "input.certno differs from the message key")
            enrollment = self.ref.enrollments.get(certno)
            local = enrollment is not None and enrollment.province == hospital.province
            ctx["route"] = LOCAL if local else CROSS
            return Forward("insured" if local else "national", _checked(req, inp), ctx), None
        if not req.insuplc_admdvs:
            raise Rejected(ErrorCode.SCHEMA_VIOLATION,
                           f"insuplc_admdvs: required for infno {req.infno}")
        if province_of(req.insuplc_admdvs) not in self.ref.provinces:
            raise Rejected(ErrorCode.UNKNOWN_REGION,
                           f"insuplc_admdvs {req.insuplc_admdvs} is not a known region")
        route = CROSS if is_cross_province(req.mdtrtarea_admvs, req.insuplc_admdvs) else LOCAL
        ctx["route"] = route
        infno = req.infno
        if infno in REGISTRATIONS:
            return self._register(req, inp, ctx, row, certno)
        if infno in FEE_UPLOADS:
            return self._upload_fees(req, inp, ctx, row, hospital)
        if infno == Infno.OUTPATIENT_REGISTER_CANCEL:
            return self._cancel_registration(req, inp, ctx, row)
        if infno in FEE_CANCELLATIONS:
            return self._cancel_fees(req, inp, ctx, row)
        if infno == Infno.INPATIENT_DISCHARGE:
            return self._discharge(req, inp, ctx, row)
        if infno in SETTLEMENTS or infno in PRESETTLEMENTS:
            return self._settle(req, inp, ctx, row)
        if infno in CANCELLATIONS:
            self._visit(row, inp.mdtrt_id, req, INPATIENT if infno ==
                        Infno.INPATIENT_SETTLE_CANCEL else OUTPATIENT, inp.psn_no,
                        allow_settled=True)
            ctx["mdtrt_id"] = inp.mdtrt_id
            return self._forward(req, inp, ctx, row, pending=inp.mdtrt_id)
        if infno == Infno.REVERSAL:
            return self._reversal(req, inp, ctx, row, certno)
        assert infno == Infno.ACCUMULATORS
        return self._forward(req, inp, ctx)

    def _cancel_registration(self, req: Request, inp: Any, ctx: dict[str, Any],
                             row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        """2202 (an outpatient registration cancelled): a visit not settled closes."""
        visit = self._visit(row, inp.mdtrt_id, req, OUTPATIENT, inp.psn_no)
        if visit["setl_id"]:
            raise Rejected(ErrorCode.VISIT_ALREADY_SETTLED, f"visit {inp.mdtrt_id} is settled"
                           f" as {visit['setl_id']}; cancel the settlement first")
        visit["status"] = CANCELLED
        visit["closed_by"] = req.msgid  # what a 2601 of it must name to reopen the visit
        touch_all([visit], inf_time_stamp(req.inf_time))
        return self._answer(row, req.msgid, {"mdtrt_id": inp.mdtrt_id,
                                             "status": "cancelled"}, ctx)

    def _discharge(self, req: Request, inp: Any, ctx: dict[str, Any],
                   row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        """2402: an open stay ends, at a time between its beginning and the request."""
        visit = self._visit(row, inp.mdtrt_id, req, INPATIENT, inp.psn_no)
        if visit["status"] != OPEN:
            raise Rejected(ErrorCode.WRONG_SEQUENCE,
                           f"stay {inp.mdtrt_id} is {visit['status']}")
        if inp.endtime < visit["begntime"]:  # yyyy-MM-dd HH:mm:ss: as text, as times
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"endtime {inp.endtime} is before "
                           f"the stay's begntime {visit['begntime']}")
        if inp.endtime > req.inf_time:
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"endtime {inp.endtime} is after the "
                           f"request's inf_time {req.inf_time}: a discharge is sent once "
                           "it has happened")
        visit["status"] = DISCHARGED
        visit["endtime"] = inp.endtime
        visit["closed_by"] = req.msgid
        touch_all([visit], inf_time_stamp(req.inf_time))
        return self._answer(row, req.msgid, {"mdtrt_id": inp.mdtrt_id,
                                             "status": "discharged"}, ctx)

    def _reversal(self, req: Request, inp: Any, ctx: dict[str, Any], row: TreatmentRow,
                  certno: str) -> tuple[Outcome, TreatmentRow | None]:
        """2601: the hospital's own transaction within the operating window, undone here
        (`_reverse`) or, for what the insured place did, forwarded to it."""
        if inp.oinfno not in REVERSIBLE and inp.oinfno not in CANCELLATIONS:
            raise Rejected(ErrorCode.NOT_REVERSIBLE,
                           f"infno {inp.oinfno} cannot be reversed by 2601")
        if not inp.omsgid.startswith(req.fixmedins_code):  # a msgid begins with its sender
            raise Rejected(ErrorCode.NOT_REVERSIBLE, "omsgid is another hospital's: a "
                           "hospital reverses only its own transactions")
        if ahead_of(inp.omsgid, req.inf_time):
            raise Rejected(ErrorCode.NOT_REVERSIBLE, TOO_FAR_AHEAD)
        if msgid_stamp(inp.omsgid) < _remembered_since(row, req):
            raise Rejected(ErrorCode.NOT_REVERSIBLE, f"msgid {inp.omsgid} is older than the "
                           f"{WINDOW_DAYS}-day operating window of this request or of the "
                           "hospital's latest one: what it did can no longer be found")
        if inp.oinfno in INSURED_SIDE:
            original = row.answers.get(inp.omsgid)
            if original is not None and original["infcode"] == 0 and \
                    INSURED_ANSWERS.isdisjoint(original["output"]):
                raise Rejected(ErrorCode.NOT_REVERSIBLE, f"msgid {inp.omsgid} was not a "
                               f"{inp.oinfno}: its answer is not one")
            if original is not None and original["infcode"] != 0 and \
                    original.get("err_code") != ErrorCode.INTERNAL_ERROR:
                # refused (not given up, E9001, which may have been done): it did nothing.
                # Refused here (a settlement's total that is not its fees'), the insured
                # place never saw it, and would take the 2601 as come before it (a review)
                ctx["original_refused"] = True
            # a settlement's reversal unsettles a visit its answer names: any of them
            return self._forward(req, inp, ctx, row,
                                 pending="" if inp.oinfno in SETTLEMENTS else None)
        # undone here, the insured place never sees it: held to the person as there (a
        # 2601 with another's psn_no undid a registration: an integrator's review)
        self._check_person(certno, req, inp.psn_no)
        return self._reverse(req, inp, ctx, row)

    def _agency_request(self, req: Request, ctx: dict[str, Any]) -> tuple[Outcome, None]:
        """3203 comes from the agency of the treatment province, and only 3203 does."""
        province = province_of(req.mdtrtarea_admvs)
        if req.infno != Infno.CLEARING_APPLICATION or \
                req.fixmedins_code != agency_code(province) or province not in self.ref.provinces:
            raise Rejected(ErrorCode.WRONG_SENDER,
                           f"{req.fixmedins_code} may not send {req.infno} for "
                           f"{req.mdtrtarea_admvs}: 3203 is sent by the agency of the treatment "
                           "province (J + province admdvs + 00000), and an agency sends only 3203")
        if req.mdtrtarea_admvs != province and req.mdtrtarea_admvs not in self.cities:
            raise Rejected(ErrorCode.UNKNOWN_REGION,
                           f"mdtrtarea_admvs {req.mdtrtarea_admvs} is not a known region of "
                           f"{province}: the province's own code, or one of its cities")
        inp = _validate(INPUT_MODELS[req.infno], req.input, "input")
        if inp.clr_optins != province:
            raise Rejected(ErrorCode.WRONG_SENDER, f"the agency of {province} applied for the "
                                                   f"clearing of {inp.clr_optins}")
        _check_period_is_over(req, inp)
        ctx["route"] = "recon"
        return Forward("reconciliation", _checked(req, inp), ctx), None

    def _forward(self, req: Request, inp: BaseModel, ctx: dict[str, Any],
                 row: TreatmentRow | None = None, pending: str | None = None
                 ) -> tuple[Outcome, TreatmentRow | None]:
        """On to the insured place. `pending`: the visit its answer will change ("" for any
        of the person's), noted in `row` until that answer is read (`queue_request`)."""
        to: Literal["national", "insured"] = "national" if ctx["route"] == CROSS else "insured"
        changed = None
        if row is not None and pending is not None and req.msgid not in row.pending:
            row.pending[req.msgid] = [pending, 0]  # the time is noted by `handle_request`
            changed = row
        return Forward(to, _checked(req, inp), ctx), changed

    def _answer(self, row: TreatmentRow, msgid: str, output: dict[str, Any],
                ctx: dict[str, Any]) -> tuple[Outcome, TreatmentRow]:
        answer = ok_answer(msgid, output)
        row.answers[msgid] = answer
        return Reply(answer, ctx), row

    def _visit(self, row: TreatmentRow, mdtrt_id: str, req: Request, kind: str, psn_no: str,
               allow_settled: bool = False, where: str = "input") -> dict[str, Any]:
        """The visit a request names, as the hospital registered it: its patient (`psn_no`)
        and insured place too, so a request cannot carry a visit over to another person."""
        visit = row.visits.get(mdtrt_id)
        if visit is None or visit["fixmedins_code"] != req.fixmedins_code \
                or visit["status"] == REVERSED:
            raise Rejected(ErrorCode.UNKNOWN_VISIT,
                           f"mdtrt_id {shown_id(mdtrt_id)} is not a visit registered by this "
                           f"hospital (or nothing has happened to it for the {WINDOW_DAYS}-day "
                           "operating window, and it is forgotten)")
        if psn_no != visit["psn_no"]:
            raise Rejected(ErrorCode.PERSON_MISMATCH,
                           f"{where}.psn_no is not the patient of visit {mdtrt_id}")
        if req.insuplc_admdvs != visit["insuplc_admdvs"]:
            raise Rejected(ErrorCode.INSURED_PLACE_MISMATCH,
                           f"insuplc_admdvs {req.insuplc_admdvs} is not the insured place visit "
                           f"{mdtrt_id} was registered with ({visit['insuplc_admdvs']})")
        if visit["kind"] != kind:
            raise Rejected(ErrorCode.WRONG_SEQUENCE,
                           f"visit {mdtrt_id} is an {visit['kind']} visit, infno {req.infno} "
                           f"is for {kind} visits")
        if visit["status"] == CANCELLED:
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"visit {mdtrt_id} was cancelled")
        if visit["setl_id"] and not allow_settled:
            raise Rejected(ErrorCode.VISIT_ALREADY_SETTLED,
                           f"visit {mdtrt_id} is already settled as {visit['setl_id']}")
        return visit

    def _register(self, req: Request, inp: Any, ctx: dict[str, Any], row: TreatmentRow,
                  certno: str) -> tuple[Outcome, TreatmentRow]:
        self._check_patient(certno, req, inp)
        inpatient = req.infno == Infno.INPATIENT_ADMIT
        mdtrt_id = mdtrt_id_for(req.mdtrtarea_admvs, inp.psn_no, req.msgid)
        number = inp.ipt_no if inpatient else inp.ipt_otp_no
        row.visits[mdtrt_id] = {
            "kind": INPATIENT if inpatient else OUTPATIENT, "status": OPEN,
            "fixmedins_code": req.fixmedins_code, "psn_no": inp.psn_no,
            "insutype": inp.insutype, "med_type": inp.med_type,
            "insuplc_admdvs": req.insuplc_admdvs, "begntime": inp.begntime,
            "ipt_otp_no": number, "fees": {}, "setl_id": "",
            "touched": inf_time_stamp(req.inf_time), "changes": 1,
        }
        output = {"data": {"mdtrt_id": mdtrt_id, "psn_no": inp.psn_no, "ipt_otp_no": number}}
        return self._answer(row, req.msgid, output, ctx)

    def _check_patient(self, certno: str, req: Request, inp: Any) -> None:
        """A registration (就医登记) names the person as their 1101 answered: psn_no, insutype
        and insured city. A treatment platform checks it against the person index, so a wrong
        one is refused at the desk, not first at the settlement, after the fees."""
        person = self._check_person(certno, req, inp.psn_no)
        if inp.insutype != person.insutype:
            raise Rejected(ErrorCode.PERSON_MISMATCH, f"input.insutype {inp.insutype} is not "
                           "the person's insurance type (1101 answers it)")

    def _check_person(self, certno: str, req: Request, psn_no: str) -> Enrollment:
        """The person of the message key, insured where the request says, with this psn_no:
        what a request the treatment platform decides itself is held to (E2002, E2003,
        E3004), as the insured place holds those it decides."""
        person = self.ref.enrollments.get(certno)
        if person is None:
            raise Rejected(ErrorCode.UNKNOWN_PERSON, f"no insured person {mask_key(certno)} "
                           "(1101 answers who is insured, and where)")
        if psn_no != person.psn_no:
            raise Rejected(ErrorCode.PERSON_MISMATCH,
                           "input.psn_no is not the person's (1101 answers it)")
        if req.insuplc_admdvs != person.insuplc_admdvs:
            raise Rejected(ErrorCode.INSURED_PLACE_MISMATCH,
                           f"insuplc_admdvs {req.insuplc_admdvs} is not where the person is "
                           "insured (1101 answers it)")
        return person

    def _upload_fees(self, req: Request, inp: Any, ctx: dict[str, Any], row: TreatmentRow,
                     hospital: Hospital) -> tuple[Outcome, TreatmentRow]:
        kind = INPATIENT if req.infno == Infno.INPATIENT_FEE_UPLOAD else OUTPATIENT
        catalogue = self.ref.catalogues[hospital.province]
        batch: dict[str, dict[str, Any]] = {}
        results = []
        for i, item in enumerate(inp.feedetail):
            where = f"input.feedetail[{i}]"
            visit = self._visit(row, item.mdtrt_id, req, kind, item.psn_no, where=where)
            if item.med_type is not None and item.med_type != visit["med_type"]:
                raise Rejected(ErrorCode.WRONG_SEQUENCE, f"{where}.med_type {item.med_type} "
                               f"differs from the registration's {visit['med_type']}")
            if item.feedetl_sn in visit["fees"] or item.feedetl_sn in batch:
                raise Rejected(ErrorCode.DUPLICATE_FEE_ITEM,
                               f"{where}.feedetl_sn {shown_id(item.feedetl_sn)} was already "
                               "uploaded")
            if item.det_item_fee_sumamt != item.cnt * item.pric:
                raise Rejected(ErrorCode.INVALID_AMOUNT,
                               f"{where}.det_item_fee_sumamt {item.det_item_fee_sumamt} is not "
                               f"cnt × pric = {item.cnt * item.pric}")
            split = catalogue.classify(item.med_list_codg, item.cnt, item.pric)
            batch[item.feedetl_sn] = {"mdtrt_id": item.mdtrt_id, "chrg_bchno": item.chrg_bchno,
                                      "msgid": req.msgid, **split.buckets()}
            results.append({"feedetl_sn": item.feedetl_sn, "det_item_fee_sumamt": split.amount,
                            "cnt": item.cnt, "pric": item.pric,
                            "pric_uplmt_amt": split.pric_uplmt_amt,
                            "selfpay_prop_bp": split.selfpay_bp,
                            "fulamt_ownpay_amt": split.fulamt_ownpay_amt,
                            "overlmt_amt": split.overlmt_selfpay,
                            "preselfpay_amt": split.preselfpay_amt,
                            "inscp_scp_amt": split.inscp_scp_amt,
                            "chrgitm_lv": split.chrgitm_lv})
        for sn, split_d in batch.items():
            row.visits[split_d["mdtrt_id"]]["fees"][sn] = split_d
        touch_all((row.visits[f["mdtrt_id"]] for f in batch.values()), inf_time_stamp(req.inf_time))
        return self._answer(row, req.msgid, {"result": results}, ctx)

    def _cancel_fees(self, req: Request, inp: Any, ctx: dict[str, Any],
                     row: TreatmentRow) -> tuple[Outcome, TreatmentRow]:
        """2205 cancels an outpatient visit's upload batch (`chrg_bchno`), 2302 a stay's fee
        item (`feedetl_sn`); "0000" cancels them all."""
        inpatient = req.infno == Infno.INPATIENT_FEE_UPLOAD_CANCEL
        visit = self._visit(row, inp.mdtrt_id, req, INPATIENT if inpatient else OUTPATIENT,
                            inp.psn_no)
        chosen = inp.feedetl_sn if inpatient else inp.chrg_bchno
        doomed = [sn for sn, f in visit["fees"].items() if chosen == ALL_FEES
                  or chosen == (sn if inpatient else f["chrg_bchno"])]
        if not doomed:
            raise Rejected(ErrorCode.NO_FEES, f"visit {inp.mdtrt_id} has no fees "
                           + (f"with feedetl_sn {shown_id(chosen)}" if inpatient
                              else f"in batch {shown_id(chosen)}"))
        for sn in doomed:
            del visit["fees"][sn]
        touch_all([visit], inf_time_stamp(req.inf_time))
        return self._answer(row, req.msgid, {"mdtrt_id": inp.mdtrt_id,
                                             "status": "fees-cancelled",
                                             "cancelled_items": len(doomed)}, ctx)

    def _settle(self, req: Request, inp: Any, ctx: dict[str, Any],
                row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        inpatient = req.infno in (Infno.INPATIENT_SETTLE, Infno.INPATIENT_PRESETTLE)
        visit = self._visit(row, inp.mdtrt_id, req, INPATIENT if inpatient else OUTPATIENT,
                            inp.psn_no)
        if inpatient and visit["status"] != DISCHARGED:
            raise Rejected(ErrorCode.WRONG_SEQUENCE,
                           f"stay {inp.mdtrt_id} must be discharged (2402) before {req.infno}")
        t = last_touched(visit)
        if req.infno in SETTLEMENTS and inf_time_stamp(req.inf_time)[:8] < t[:8]:
            # by the day, as both sides forget: the treatment side forgets a visit by its
            # latest change, the insured side a settlement by its own time, so one dated
            # days earlier was forgotten there first and could no longer be undone (a review)
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"inf_time {req.inf_time} is on a day "
                           f"before visit {shown_id(inp.mdtrt_id)}'s latest change "
                           f"({t[:4]}-{t[4:6]}-{t[6:8]}): a settlement is sent after what it "
                           "settles")
        if inp.med_type != visit["med_type"]:
            raise Rejected(ErrorCode.WRONG_SEQUENCE, f"input.med_type {inp.med_type} differs "
                           f"from the registration's {visit['med_type']}")
        if not visit["fees"]:
            raise Rejected(ErrorCode.NO_FEES, f"visit {inp.mdtrt_id} has no uploaded fees")
        totals = FeeTotals.of_buckets(visit["fees"].values())
        if inp.medfee_sumamt != totals.medfee_sumamt:
            raise Rejected(ErrorCode.AMOUNT_MISMATCH,
                           f"input.medfee_sumamt {inp.medfee_sumamt} differs from the uploaded "
                           f"fees' total {totals.medfee_sumamt}")
        ctx["fees"] = totals.as_dict()
        ctx["mdtrt_id"] = inp.mdtrt_id
        ctx["visit_changes"] = visit.get("changes", 0)  # the visit as settled
        return self._forward(req, inp, ctx, row,
                             pending=inp.mdtrt_id if req.infno in SETTLEMENTS else None)

    def _reverse(self, req: Request, inp: Any, ctx: dict[str, Any],
                 row: TreatmentRow) -> tuple[Outcome, TreatmentRow]:
        """2601 of a registration, a fee upload, a registration's cancellation or a discharge:
        undo it, or refuse it when it arrives."""
        out = {"omsgid": inp.omsgid, "oinfno": inp.oinfno, "result": "nothing-to-undo",
               "reversed_setl_id": ""}
        original = row.answers.get(inp.omsgid)
        if original is None:
            row.reversed[inp.omsgid] = in_advance(inp.oinfno, req.msgid)
            out["result"] = "reversed-in-advance"
        elif original["infcode"] == 0 and inp.oinfno in REGISTRATIONS:
            data = original["output"].get("data")
            visit = row.visits.get(data.get("mdtrt_id", "")) if isinstance(data, dict) else None
            if visit is None:
                raise Rejected(ErrorCode.NOT_REVERSIBLE,
                               f"msgid {inp.omsgid} was not a registration ({inp.oinfno})")
            if visit["fees"] or visit["setl_id"]:
                raise Rejected(ErrorCode.NOT_REVERSIBLE, "the registration has fees or a "
                               "settlement; cancel those first")
            visit["status"] = REVERSED
            touch_all([visit], inf_time_stamp(req.inf_time))
            out["result"] = "undone"
        elif original["infcode"] == 0 and inp.oinfno in CLOSINGS:
            visit = row.visits.get(original["output"].get("mdtrt_id", ""))
            if visit is None or original["output"].get("status") != CLOSINGS[inp.oinfno]:
                raise Rejected(ErrorCode.NOT_REVERSIBLE,
                               f"msgid {inp.omsgid} was not a {inp.oinfno}")
            if visit["setl_id"]:
                raise Rejected(ErrorCode.VISIT_ALREADY_SETTLED,
                               "the stay is settled; cancel the settlement first")
            if visit["status"] == CLOSINGS[inp.oinfno] and \
                    visit.get("closed_by") == inp.omsgid:  # reopened: as if it never came
                visit["status"] = OPEN
                visit.pop("endtime", None)
                visit.pop("closed_by")
                touch_all([visit], inf_time_stamp(req.inf_time))
                out["result"] = "undone"
        elif original["infcode"] == 0 and inp.oinfno in FEE_UPLOADS:
            if not isinstance(original["output"].get("result"), list):
                raise Rejected(ErrorCode.NOT_REVERSIBLE,
                               f"msgid {inp.omsgid} was not a fee upload ({inp.oinfno})")
            # the items that upload brought, wherever they are (feedetl_sn repeat across visits)
            brought = [(v, sn) for v in row.visits.values() for sn, f in v["fees"].items()
                       if f.get("msgid") == inp.omsgid]
            if any(v["setl_id"] for v, _ in brought):
                raise Rejected(ErrorCode.VISIT_ALREADY_SETTLED,
                               "the fees belong to a settled visit; cancel the settlement first")
            for v, sn in brought:
                del v["fees"][sn]
            touch_all((v for v, _ in brought), inf_time_stamp(req.inf_time))
            out["result"] = "undone" if brought else "nothing-to-undo"
        return self._answer(row, req.msgid, out, ctx)

    # -- answers coming back ----------------------------------------------------------------
    def handle_answer(self, ans: dict[str, Any], ctx: dict[str, Any],
                      row: TreatmentRow | None) -> TreatmentRow | None:
        """Keep the insured place's answer for duplicates of the request, and follow what it
        did to the visit; return the row if it changed."""
        msgid = ctx.get("msgid")
        row = row if row is not None else TreatmentRow()
        if not msgid:
            return None
        if msgid in row.answers:
            return None
        row.answers[msgid] = ans
        row.pending.pop(msgid, None)  # what was held back behind it is due now (`TreatmentRow.due`)
        if ans["infcode"] != 0:
            return row
        infno, out = ctx["infno"], ans["output"]
        visit = row.visits.get(ctx.get("mdtrt_id", ""))
        # Answers can come late and out of order: a worker killed before it kept an answer
        # has the request processed again, and its answer comes back after later ones.
        stamp = msgid_stamp(msgid)  # the request's time (messages/envelope.py)
        if infno in SETTLEMENTS:
            # ...or early: a worker killed before this row kept the requests that led to the
            # settlement (a 2204, a 2402) reads them again, and may read this answer, kept
            # on its own topic, first. Marked settled now, the visit would refuse them
            # (E4002) instead of answering as the first time: the settlement waits until
            # the row has caught up with the visit it settled.
            setl_id = out["setlinfo"]["setl_id"]
            if visit is None or visit.get("changes", 0) < ctx.get("visit_changes", 0):
                row.settling[msgid] = [ctx.get("mdtrt_id", ""), setl_id,
                                       ctx.get("visit_changes", 0)]
            elif not undone_in(row, setl_id):
                visit["setl_id"] = setl_id
                touch(visit, stamp)
        elif infno in CANCELLATIONS and visit is not None:
            if visit["setl_id"] == out["setlinfo"]["init_setl_id"]:
                visit["setl_id"] = ""
                touch(visit, stamp)
        elif infno == Infno.REVERSAL and out.get("reversed_setl_id"):
            for v in row.visits.values():
                if v["setl_id"] == out["reversed_setl_id"]:
                    v["setl_id"] = ""
                    touch(v, stamp)
        return row


def _remembered_since(row: TreatmentRow, req: Request) -> str:
    """The oldest msgid stamp a 2601 may name: the window of its own time, and no older than
    what the person's row still remembers of its hospital (the window of that hospital's
    latest request, by the day; `forget_stale`). A 2601 of something forgotten would
    otherwise be taken as a reversal in advance while what it named stays done."""
    since = cutoff(req.inf_time)
    clock = row.clock(req.fixmedins_code)
    return max(since, cutoff(clock) if clock else "", horizon(row.clocks))

"""The insured-place platform (参保地): identifies its insured persons (1101), computes
pre-settlements and settlements with its own policy, cancels and reverses them, and reports
accumulators (5206). Every answer is kept by msgid in the person's row, so a duplicate request
gets the original answer and changes nothing; a visit is settled at most once at a time."""

from __future__ import annotations

from typing import Any

from messages.codes import (
    CANCELLATIONS,
    PRESETTLEMENTS,
    SETTLEMENTS,
    ErrorCode,
    Infno,
)
from messages.envelope import error_answer, ok_answer, province_of
from messages.identity import mask_certno, shown_id
from messages.platform import CROSS
from messages.transactions import EMERGENCY_MED_TYPES
from settlement.catalogue import FeeTotals
from settlement.ids import setl_id_for
from settlement.ledger import SettlementEvent, events_from_answers
from settlement.person import PersonRow, ytd_key
from settlement.policy import Benefit, BenefitContext, Category, category_of, compute_benefit
from settlement.reference import SUSPENDED, Enrollment, ReferenceData
from settlement.retention import WINDOW_DAYS, cutoff, msgid_stamp
from settlement.reversals import TOO_FAR_AHEAD, ahead_of, in_advance, reversed_by

SETTLED, CANCELLED, REVERSED = "settled", "cancelled", "reversed"
ACCUMULATOR_NAMES = (ytd_key("dedc", Category.OUTPATIENT), ytd_key("fund", Category.OUTPATIENT),
                     ytd_key("fund", Category.INPATIENT))


class Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class InsuredPlatform:
    """Pure handler: `(row, request) -> (answer, row to store or None if unchanged)`."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref

    @staticmethod
    def money_event(req: dict[str, Any], answer: dict[str, Any], row: PersonRow | None,
                    fixmedins_code: str) -> SettlementEvent | None:
        """The fund payment this answer moved (settled, cancelled or reversed), if any."""
        if answer["infcode"] != 0 or row is None:
            return None
        settlements = {s["setl_id"]: s for s in row.settlements.values()}
        exchanges = [(req["msgid"], req["infno"], [answer])]
        if req["infno"] in CANCELLATIONS:
            original = settlements.get(answer["output"]["setlinfo"]["init_setl_id"])
        elif req["infno"] == Infno.REVERSAL:
            original = settlements.get(answer["output"].get("reversed_setl_id", ""))
        else:
            original = None
        if original is not None:  # the settlement it undoes comes first
            exchanges.insert(0, (original["msgid"], Infno.OUTPATIENT_SETTLE,
                                 [{"infcode": 0, "output": {"setlinfo": original}}]))
        events = events_from_answers(fixmedins_code, exchanges)
        return events[-1] if events and (original is None) == (len(events) == 1) else None

    def handle(self, certno: str, row: PersonRow | None, req: dict[str, Any],
               ctx: dict[str, Any]) -> tuple[dict[str, Any], PersonRow | None]:
        msgid = req["msgid"]
        enrollment = self.ref.enrollments.get(certno)
        if enrollment is None:
            return error_answer(msgid, ErrorCode.UNKNOWN_PERSON,
                                f"no insured person {mask_certno(certno)} in this province"), None
        row = row if row is not None else PersonRow(balance=enrollment.balance)
        # what is past the window of the sending hospital's clock is not seen
        row.forget_past(req["fixmedins_code"], req["inf_time"])
        seen = row.answers.get(msgid)
        if seen is not None:  # a duplicate: the original answer, nothing changes
            return seen, None
        try:
            if (by := reversed_by(row.reversed, msgid, req["infno"])) is not None:
                raise Refusal(ErrorCode.REVERSED, f"msgid {msgid} was reversed in advance by "
                                                  f"2601 {by}")
            answer = ok_answer(msgid, self._apply(enrollment, row, req, ctx))
        except Refusal as exc:
            answer = error_answer(msgid, exc.code, str(exc))
        row.answers[msgid] = answer
        row.forget_past(req["fixmedins_code"], req["inf_time"])
        return answer, row

    def _apply(self, e: Enrollment, row: PersonRow, req: dict[str, Any],
               ctx: dict[str, Any]) -> dict[str, Any]:
        infno, inp = req["infno"], req["input"]
        if infno == Infno.PERSON_INFO:
            return self.person_info(e, row)
        # only the insured place answers for the person's money: a settlement, and also a
        # cancellation, a 2601 or a 5206 (which a wrong province would send on the wrong
        # route). Their city, as 1101 answers it: a visit's requests were held to it at the
        # registration, a 2601 or a 5206 names no visit and is held to it here
        if req["insuplc_admdvs"] != e.insuplc_admdvs:
            raise Refusal(ErrorCode.INSURED_PLACE_MISMATCH, f"insuplc_admdvs "
                          f"{req['insuplc_admdvs']} is not where the person is insured "
                          "(1101 answers it)")
        if inp.get("psn_no") != e.psn_no:
            raise Refusal(ErrorCode.PERSON_MISMATCH,
                          "psn_no does not match the insured person's record")
        if infno in SETTLEMENTS or infno in PRESETTLEMENTS:
            return self.settle(e, row, req, ctx, commit=infno in SETTLEMENTS)
        if infno in CANCELLATIONS:
            return self.cancel(e, row, req)
        if infno == Infno.REVERSAL:
            return self.reverse(e, row, req, refused_before=bool(ctx.get("original_refused")))
        if infno == Infno.ACCUMULATORS:
            year = inp["cum_ym"][:4]
            return {"psn": mask_certno(e.certno), "year": year, "cuminfo": [
                {"cum_type_code": name, "cum": row.accumulator(year, name)}
                for name in ACCUMULATOR_NAMES]}
        raise Refusal(ErrorCode.UNSUPPORTED_INFNO,
                      f"infno {infno} is not handled by the insured-place platform")

    def person_info(self, e: Enrollment, row: PersonRow) -> dict[str, Any]:
        return {
            "baseinfo": {"psn_no": e.psn_no, "psn_cert_type": "01", "certno": e.certno,
                         "gend": e.gend, "brdy": e.brdy},
            "insuinfo": [{"insutype": e.insutype, "balc": row.balance,
                          "psn_type": "1102" if e.retired else "1101",
                          "psn_insu_stas": e.insu_stas, "insuplc_admdvs": e.insuplc_admdvs}],
            "fileinfo": [f.as_dict() for f in e.filings],
        }

    # -- settlement -------------------------------------------------------------------------
    def settle(self, e: Enrollment, row: PersonRow, req: dict[str, Any], ctx: dict[str, Any],
               commit: bool) -> dict[str, Any]:
        msgid, inp = req["msgid"], req["input"]
        if inp["insutype"] != e.insutype:
            raise Refusal(ErrorCode.PERSON_MISMATCH,
                          f"insutype {inp['insutype']} is not the person's insurance type")
        if e.insu_stas == SUSPENDED:
            raise Refusal(ErrorCode.INSURANCE_SUSPENDED,
                          "the person's insurance is suspended (psn_insu_stas 2)")
        mdtrt_id = inp["mdtrt_id"]
        for setl in row.settlements.values():
            if setl["mdtrt_id"] == mdtrt_id and setl["status"] == SETTLED:
                raise Refusal(ErrorCode.VISIT_ALREADY_SETTLED,
                              f"visit {mdtrt_id} is already settled as {setl['setl_id']}")
        category = category_of(inp["med_type"])
        year, day = req["inf_time"][:4], req["inf_time"][:10]
        treatment_province = province_of(req["mdtrtarea_admvs"])
        benefit = compute_benefit(self.ref.policy_on(e.province, day), FeeTotals(**ctx["fees"]),
                                  BenefitContext(
            insutype=e.insutype,
            retired=e.retired,
            category=category,
            hospital_level=ctx["hosp_lv"],
            cross_province=ctx["route"] == CROSS,
            filed=e.filed_for(treatment_province, day),
            emergency=inp["med_type"] in EMERGENCY_MED_TYPES,
            deductible_paid_ytd=row.accumulator(year, ytd_key("dedc", Category.OUTPATIENT)),
            fund_paid_ytd=row.accumulator(year, ytd_key("fund", category)),
            balance=row.balance,
            acct_used=inp["acct_used_flag"] == "1",
        ))
        setl_id = setl_id_for(e.insuplc_admdvs, e.psn_no, msgid) if commit else ""
        setlinfo = _setlinfo(setl_id, mdtrt_id, e, inp["med_type"], req, benefit, category)
        if commit:
            row.balance = benefit.balc
            _accumulate(row, year, category, benefit.hifp_pay, benefit.act_pay_dedc)
            row.settlements[setl_id] = {**setlinfo, "msgid": msgid, "status": SETTLED}
        return {"setlinfo": setlinfo}

    def _undo(self, row: PersonRow, setl: dict[str, Any], status: str) -> None:
        """Restore balance and accumulators exactly as they were before `setl`."""
        category = Category(setl["clr_type"])
        row.balance += setl["acct_pay"]
        _accumulate(row, setl["setl_time"][:4], category, -setl["hifp_pay"],
                    -setl["act_pay_dedc"])
        setl["status"] = status

    def cancel(self, e: Enrollment, row: PersonRow, req: dict[str, Any]) -> dict[str, Any]:
        inp = req["input"]
        setl = row.settlements.get(inp["setl_id"])
        if setl is None or setl["mdtrt_id"] != inp["mdtrt_id"]:
            raise Refusal(ErrorCode.UNKNOWN_SETTLEMENT,
                          f"no settlement {shown_id(inp['setl_id'])} of visit "
                          f"{shown_id(inp['mdtrt_id'])}")
        if setl["status"] != SETTLED:
            raise Refusal(ErrorCode.SETTLEMENT_ALREADY_CANCELLED,
                          f"settlement {inp['setl_id']} is already {setl['status']}")
        if req["inf_time"] < setl["setl_time"]:  # it would be cleared before what it undoes
            raise Refusal(ErrorCode.WRONG_SEQUENCE, f"the cancellation is dated "
                          f"{req['inf_time']}, before its settlement ({setl['setl_time']})")
        wanted = Category.INPATIENT if req["infno"] == Infno.INPATIENT_SETTLE_CANCEL \
            else Category.OUTPATIENT
        if setl["clr_type"] != wanted.value:
            raise Refusal(ErrorCode.WRONG_SEQUENCE, f"settlement {inp['setl_id']} is not "
                          f"{'an inpatient' if wanted is Category.INPATIENT else 'an outpatient'}"
                          f" settlement; cancel it with its own transaction")
        self._undo(row, setl, CANCELLED)
        setl["cancel_msgid"] = req["msgid"]
        return {"setlinfo": {
            "setl_id": setl_id_for(e.insuplc_admdvs, e.psn_no, req["msgid"]),
            "init_setl_id": setl["setl_id"], "mdtrt_id": setl["mdtrt_id"],
            "psn_no": e.psn_no, "setl_time": req["inf_time"],
            "medfee_sumamt": -setl["medfee_sumamt"], "hifp_pay": -setl["hifp_pay"],
            "fund_pay_sumamt": -setl["fund_pay_sumamt"], "acct_pay": -setl["acct_pay"],
            "psn_cash_pay": -setl["psn_cash_pay"], "balc": row.balance}}

    def reverse(self, e: Enrollment, row: PersonRow, req: dict[str, Any],
                refused_before: bool = False) -> dict[str, Any]:
        """2601: undo what `omsgid` did; if it has not arrived, refuse it when it does. One
        the treatment side refused (`refused_before`) never comes: nothing to undo."""
        omsgid, oinfno = req["input"]["omsgid"], req["input"]["oinfno"]
        if not omsgid.startswith(req["fixmedins_code"]):  # as the treatment side checks
            raise Refusal(ErrorCode.NOT_REVERSIBLE, "omsgid is another hospital's: a "
                          "hospital reverses only its own transactions")
        if ahead_of(omsgid, req["inf_time"]):
            raise Refusal(ErrorCode.NOT_REVERSIBLE, TOO_FAR_AHEAD)
        if msgid_stamp(omsgid) < cutoff(req["inf_time"]):
            raise Refusal(ErrorCode.NOT_REVERSIBLE, f"msgid {omsgid} is older than the "
                          f"{WINDOW_DAYS}-day operating window")
        out = {"omsgid": omsgid, "oinfno": oinfno, "result": "nothing-to-undo",
               "reversed_setl_id": ""}
        if oinfno in CANCELLATIONS:  # in either order, so that both end in the same state
            raise Refusal(ErrorCode.NOT_REVERSIBLE,
                          f"a cancellation ({oinfno}) cannot be reversed; settle the visit again")
        original = row.answers.get(omsgid)
        if original is None and refused_before:
            return out
        if original is None:
            row.reversed[omsgid] = in_advance(oinfno, req["msgid"])
            out["result"] = "reversed-in-advance"
            return out
        if original["infcode"] != 0:
            return out
        setlinfo = original["output"].get("setlinfo")
        if isinstance(setlinfo, dict) and "init_setl_id" in setlinfo:  # whatever it was named
            raise Refusal(ErrorCode.NOT_REVERSIBLE, f"msgid {omsgid} was a cancellation, which "
                          "cannot be reversed; settle the visit again")
        setl = _settlement_of(row, omsgid, original)
        if setl is None and oinfno in SETTLEMENTS:
            raise Refusal(ErrorCode.NOT_REVERSIBLE,
                          f"msgid {omsgid} was not a settlement ({oinfno})")
        if setl is not None and oinfno not in SETTLEMENTS:  # told it undid nothing, it would
            raise Refusal(ErrorCode.NOT_REVERSIBLE,         # leave the money where it went
                          f"msgid {omsgid} was a settlement, not a {oinfno}")
        if setl is not None:
            setl_id = setl["setl_id"]
            if setl["status"] == SETTLED:
                self._undo(row, setl, REVERSED)
                setl["reverse_msgid"] = req["msgid"]  # when it changed (forget_before)
                out["result"] = "undone"
            out["reversed_setl_id"] = setl_id
        return out


def _settlement_of(row: PersonRow, msgid: str,
                   answer: dict[str, Any]) -> dict[str, Any] | None:
    """The settlement that request `msgid` made (its OK `answer` names it), if it made one:
    a pre-settlement's answer names a settlement id that was never kept."""
    setlinfo = answer["output"].get("setlinfo")
    setl = row.settlements.get(setlinfo.get("setl_id", "")) if isinstance(setlinfo, dict) \
        else None
    return setl if setl is not None and setl["msgid"] == msgid else None


def _accumulate(row: PersonRow, year: str, category: Category, hifp: int, dedc: int) -> None:
    row.add(year, ytd_key("fund", category), hifp)
    if category is Category.OUTPATIENT:
        row.add(year, ytd_key("dedc", category), dedc)


def _setlinfo(setl_id: str, mdtrt_id: str, e: Enrollment, med_type: str, req: dict[str, Any],
              b: Benefit, category: Category) -> dict[str, Any]:
    return {
        "setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": e.psn_no, "insutype": e.insutype,
        "med_type": med_type, "setl_time": req["inf_time"],
        "medfee_sumamt": b.medfee_sumamt, "fulamt_ownpay_amt": b.fulamt_ownpay_amt,
        "overlmt_selfpay": b.overlmt_selfpay, "preselfpay_amt": b.preselfpay_amt,
        "inscp_scp_amt": b.inscp_scp_amt, "act_pay_dedc": b.act_pay_dedc,
        "hifp_pay": b.hifp_pay, "fund_pay_sumamt": b.fund_pay_sumamt,
        "psn_part_amt": b.psn_part_amt, "acct_pay": b.acct_pay, "psn_cash_pay": b.psn_cash_pay,
        "balc": b.balc, "clr_type": category.value, "insuplc_admdvs": e.insuplc_admdvs,
        "mdtrtarea_admvs": req["mdtrtarea_admvs"],
    }

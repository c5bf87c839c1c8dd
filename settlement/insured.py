"""The insured-place platform (参保地): identifies its insured persons (1101) and settles
their visits (2207) with its own policy. Idempotent by msgid; one settlement per visit."""

from __future__ import annotations

from typing import Any

from messages.codes import ErrorCode, Infno
from messages.envelope import error_answer, ok_answer, province_of
from messages.identity import mask_certno
from messages.platform import CROSS
from settlement.catalogue import FeeTotals
from settlement.ids import setl_id_for
from settlement.person import PersonRow, ytd_key
from settlement.policy import BenefitContext, Category, category_of, compute_benefit
from settlement.reference import Enrollment, ReferenceData


class InsuredPlatform:
    """Pure handler: `(row, request) -> (answer, row to store or None if unchanged)`."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref

    def new_row(self, enrollment: Enrollment) -> PersonRow:
        return PersonRow(balance=enrollment.balance)

    def handle(self, certno: str, row: PersonRow | None, req: dict[str, Any],
               ctx: dict[str, Any]) -> tuple[dict[str, Any], PersonRow | None]:
        msgid = req["msgid"]
        enrollment = self.ref.enrollments.get(certno)
        if enrollment is None:
            return error_answer(msgid, ErrorCode.UNKNOWN_PERSON,
                                f"no insured person {mask_certno(certno)} in this province"), None
        if row is None:
            row = self.new_row(enrollment)
        infno = req["infno"]
        if infno == Infno.PERSON_INFO:
            seen = row.answers.get(msgid)
            if seen is not None:  # a duplicate: the original answer, even if the balance moved
                return seen, None
            answer = self.person_info(enrollment, row, req)
            row.answers[msgid] = answer
            return answer, row
        if infno == Infno.OUTPATIENT_SETTLE:
            seen = row.answers.get(msgid)
            if seen is not None:  # a duplicate: the original answer, nothing changes
                return seen, None
            answer = self.settle(enrollment, row, req, ctx)
            if answer["infcode"] == 0:
                row.answers[msgid] = answer
                return answer, row
            return answer, None
        return error_answer(msgid, ErrorCode.UNSUPPORTED_INFNO,
                            f"infno {infno} is not handled by the insured-place platform"), None

    def person_info(self, e: Enrollment, row: PersonRow, req: dict[str, Any]) -> dict[str, Any]:
        output = {
            "baseinfo": {"psn_no": e.psn_no, "psn_cert_type": "01", "certno": e.certno,
                         "gend": e.gend, "brdy": e.brdy},
            "insuinfo": [{"insutype": e.insutype, "balc": row.balance,
                          "psn_type": "1102" if e.retired else "1101", "psn_insu_stas": "1",
                          "insuplc_admdvs": e.insuplc_admdvs}],
            "fileinfo": {"filed": e.filed},
        }
        return ok_answer(req["msgid"], output)

    def settle(self, e: Enrollment, row: PersonRow, req: dict[str, Any],
               ctx: dict[str, Any]) -> dict[str, Any]:
        msgid, inp = req["msgid"], req["input"]
        if province_of(req["insuplc_admdvs"]) != e.province:  # only the insured place settles
            return error_answer(msgid, ErrorCode.INSURED_PLACE_MISMATCH,
                                f"insuplc_admdvs {req['insuplc_admdvs']} is not where the "
                                "person is insured")
        if inp["psn_no"] != e.psn_no or inp["insutype"] != e.insutype:
            return error_answer(msgid, ErrorCode.PERSON_MISMATCH,
                                "psn_no or insutype does not match the insured person's record")
        mdtrt_id = inp["mdtrt_id"]
        for setl in row.settlements.values():
            if setl["mdtrt_id"] == mdtrt_id:
                return error_answer(msgid, ErrorCode.VISIT_ALREADY_SETTLED,
                                    f"visit {mdtrt_id} is already settled as {setl['setl_id']}")
        fees = FeeTotals(**ctx["fees"])
        category = category_of(inp["med_type"])
        year = req["inf_time"][:4]
        policy = self.ref.policies[e.province]
        benefit = compute_benefit(policy, fees, BenefitContext(
            insutype=e.insutype,
            retired=e.retired,
            category=category,
            hospital_level=ctx["hosp_lv"],
            cross_province=ctx["route"] == CROSS,
            filed=e.filed,
            emergency=False,
            deductible_paid_ytd=row.accumulator(year, ytd_key("dedc", Category.OUTPATIENT)),
            fund_paid_ytd=row.accumulator(year, ytd_key("fund", category)),
            balance=row.balance,
            acct_used=inp["acct_used_flag"] == "1",
        ))
        setl_id = setl_id_for(e.insuplc_admdvs, msgid)
        setlinfo = {
            "setl_id": setl_id,
            "mdtrt_id": mdtrt_id,
            "psn_no": e.psn_no,
            "insutype": e.insutype,
            "med_type": inp["med_type"],
            "setl_time": req["inf_time"],
            "medfee_sumamt": benefit.medfee_sumamt,
            "fulamt_ownpay_amt": benefit.fulamt_ownpay_amt,
            "overlmt_selfpay": benefit.overlmt_selfpay,
            "preselfpay_amt": benefit.preselfpay_amt,
            "inscp_scp_amt": benefit.inscp_scp_amt,
            "act_pay_dedc": benefit.act_pay_dedc,
            "hifp_pay": benefit.hifp_pay,
            "fund_pay_sumamt": benefit.fund_pay_sumamt,
            "psn_part_amt": benefit.psn_part_amt,
            "acct_pay": benefit.acct_pay,
            "psn_cash_pay": benefit.psn_cash_pay,
            "balc": benefit.balc,
            "clr_type": category.value,
            "insuplc_admdvs": e.insuplc_admdvs,
            "mdtrtarea_admvs": req["mdtrtarea_admvs"],
        }
        row.balance = benefit.balc
        row.add(year, ytd_key("fund", category), benefit.hifp_pay)
        if category is Category.OUTPATIENT:
            row.add(year, ytd_key("dedc", category), benefit.act_pay_dedc)
        row.settlements[setl_id] = {**setlinfo, "msgid": msgid, "status": "settled"}
        return ok_answer(msgid, {"setlinfo": setlinfo})

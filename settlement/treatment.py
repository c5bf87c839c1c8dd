"""The treatment-place platform (就医地): the hospital's only counterpart. It validates what
hospitals send, registers visits, classifies fees with its own catalogue (就医地目录), and
forwards identification and settlement to the insured place (via the national platform when
the patient is insured in another province)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from messages.codec import MalformedMessage, decode
from messages.codes import ErrorCode, Infno
from messages.envelope import Request, error_answer, is_cross_province, ok_answer, province_of
from messages.identity import is_valid_certno, mask_certno
from messages.platform import CROSS, LOCAL
from messages.transactions import INPUT_MODELS
from settlement.catalogue import FeeTotals, ItemSplit
from settlement.ids import mdtrt_id_for, sign_no_for
from settlement.reference import ReferenceData


@dataclass(slots=True)
class TreatmentRow:
    """A person's visits registered on the treatment side, and answers given there."""

    visits: dict[str, dict[str, Any]] = field(default_factory=dict)  # mdtrt_id -> visit
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # msgid -> answer

    def to_dict(self) -> dict[str, Any]:
        return {"visits": self.visits, "answers": self.answers}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreatmentRow:
        return cls(d["visits"], d["answers"])


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the hospital now."""

    answer: dict[str, Any]
    ctx: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Forward:
    """Send on towards the insured place: to the national platform, or straight to the
    insured-side role when the patient is insured in this province."""

    to: Literal["national", "insured"]
    req: dict[str, Any]
    ctx: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Cannot be answered (no usable sender): kept with the reason."""

    error_code: ErrorCode
    reason: str


Outcome = Reply | Forward | DeadLetter


class Rejected(Exception):
    """A request refused with a stable error code; the message is safe to show (masked)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Where and what, without echoing input values (they may be personal)."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc or '<root>'}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _validate(model: type[BaseModel], data: Any, prefix: str = "") -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Rejected(ErrorCode.SCHEMA_VIOLATION, describe_validation_error(exc, prefix)) from None


class TreatmentPlatform:
    """Pure handler of hospital requests and of answers coming back from the insured place."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref

    # -- hospital requests ------------------------------------------------------------------
    def handle_request(self, key: str | None, raw: bytes | None,
                       row: TreatmentRow | None) -> tuple[Outcome, TreatmentRow | None]:
        """Validate and act on one hospital request keyed by the patient's certno."""
        try:
            data = decode(raw)
        except MalformedMessage as exc:
            return DeadLetter(ErrorCode.MALFORMED_JSON, str(exc)), None
        try:
            req = _validate(Request, data)
        except Rejected as exc:
            msgid, code = data.get("msgid"), data.get("fixmedins_code")
            if isinstance(msgid, str) and isinstance(code, str) and code in self.ref.hospitals:
                ctx = {"infno": str(data.get("infno", "")), "msgid": msgid, "fixmedins_code": code}
                return Reply(error_answer(msgid, exc.code, str(exc)), ctx), None
            return DeadLetter(exc.code, f"unanswerable request: {exc}"), None
        ctx = {"infno": req.infno, "msgid": req.msgid, "fixmedins_code": req.fixmedins_code,
               "mdtrtarea_admvs": req.mdtrtarea_admvs, "insuplc_admdvs": req.insuplc_admdvs}
        row = row if row is not None else TreatmentRow()
        seen = row.answers.get(req.msgid)
        if seen is not None:
            return Reply(seen, ctx), None
        try:
            return self._dispatch(key, req, ctx, row)
        except Rejected as exc:
            return Reply(error_answer(req.msgid, exc.code, str(exc)), ctx), None

    def _dispatch(self, key: str | None, req: Request, ctx: dict[str, Any],
                  row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        hospital = self.ref.hospitals.get(req.fixmedins_code)
        if hospital is None:
            raise Rejected(ErrorCode.UNKNOWN_HOSPITAL,
                           f"fixmedins_code {req.fixmedins_code} is not a designated institution")
        if province_of(req.mdtrtarea_admvs) != hospital.province:
            raise Rejected(ErrorCode.WRONG_PROVINCE,
                           f"hospital {req.fixmedins_code} belongs to {hospital.province}, "
                           f"not to mdtrtarea_admvs {req.mdtrtarea_admvs}")
        model = INPUT_MODELS.get(req.infno)
        if model is None:
            raise Rejected(ErrorCode.UNSUPPORTED_INFNO, f"infno {req.infno} is not supported")
        inp = _validate(model, req.input, "input")
        if req.infno == Infno.SIGN_IN:  # keyed by the hospital, touches no person
            sign_no = sign_no_for(req.msgid)
            return Reply(ok_answer(req.msgid, {"signinoutb": {
                "sign_time": req.inf_time, "sign_no": sign_no}}), ctx), None
        certno = key or ""
        if not is_valid_certno(certno):
            raise Rejected(ErrorCode.INVALID_CERTNO,
                           f"message key {mask_certno(certno)} is not a valid citizen ID number")
        if req.infno == Infno.PERSON_INFO:
            if inp.certno != certno:  # type: ignore[attr-defined]
                raise Rejected(ErrorCode.SCHEMA_VIOLATION,
                               "input.certno differs from the message key")
            enrollment = self.ref.enrollments.get(certno)
            local = enrollment is not None and enrollment.province == hospital.province
            ctx.update(route=LOCAL if local else CROSS, hosp_lv=hospital.level)
            return Forward("insured" if local else "national", req.model_dump(), ctx), None
        if not req.insuplc_admdvs:
            raise Rejected(ErrorCode.SCHEMA_VIOLATION,
                           f"insuplc_admdvs: required for infno {req.infno}")
        if province_of(req.insuplc_admdvs) not in self.ref.provinces:
            raise Rejected(ErrorCode.UNKNOWN_REGION,
                           f"insuplc_admdvs {req.insuplc_admdvs} is not a known region")
        route = CROSS if is_cross_province(req.mdtrtarea_admvs, req.insuplc_admdvs) else LOCAL
        ctx.update(route=route, hosp_lv=hospital.level)
        if req.infno == Infno.OUTPATIENT_REGISTER:
            return self._register(req, inp, ctx, row)
        if req.infno == Infno.FEE_UPLOAD:
            return self._upload_fees(req, inp, ctx, row, hospital.province)
        return self._settle(req, inp, ctx, row)

    def _answer(self, row: TreatmentRow, msgid: str, output: dict[str, Any],
                ctx: dict[str, Any]) -> tuple[Outcome, TreatmentRow]:
        answer = ok_answer(msgid, output)
        row.answers[msgid] = answer
        return Reply(answer, ctx), row

    def _visit(self, row: TreatmentRow, mdtrt_id: str, req: Request) -> dict[str, Any]:
        visit = row.visits.get(mdtrt_id)
        if visit is None or visit["fixmedins_code"] != req.fixmedins_code:
            raise Rejected(ErrorCode.UNKNOWN_VISIT,
                           f"mdtrt_id {mdtrt_id} is not a visit registered by this hospital")
        if visit["setl_id"]:
            raise Rejected(ErrorCode.VISIT_ALREADY_SETTLED,
                           f"visit {mdtrt_id} is already settled as {visit['setl_id']}")
        return visit

    def _register(self, req: Request, inp: Any, ctx: dict[str, Any],
                  row: TreatmentRow) -> tuple[Outcome, TreatmentRow]:
        mdtrt_id = mdtrt_id_for(req.mdtrtarea_admvs, req.msgid)
        row.visits[mdtrt_id] = {
            "fixmedins_code": req.fixmedins_code, "psn_no": inp.psn_no,
            "insutype": inp.insutype, "insuplc_admdvs": req.insuplc_admdvs,
            "begntime": inp.begntime, "ipt_otp_no": inp.ipt_otp_no, "fees": {}, "setl_id": "",
        }
        output = {"data": {"mdtrt_id": mdtrt_id, "psn_no": inp.psn_no,
                           "ipt_otp_no": inp.ipt_otp_no}}
        return self._answer(row, req.msgid, output, ctx)

    def _upload_fees(self, req: Request, inp: Any, ctx: dict[str, Any], row: TreatmentRow,
                     province: str) -> tuple[Outcome, TreatmentRow]:
        catalogue = self.ref.catalogues[province]
        batch: dict[str, dict[str, Any]] = {}
        results = []
        for i, item in enumerate(inp.feedetail):
            where = f"input.feedetail[{i}]"
            visit = self._visit(row, item.mdtrt_id, req)
            if item.feedetl_sn in visit["fees"] or item.feedetl_sn in batch:
                raise Rejected(ErrorCode.DUPLICATE_FEE_ITEM,
                               f"{where}.feedetl_sn {item.feedetl_sn} was already uploaded")
            if item.det_item_fee_sumamt != item.cnt * item.pric:
                raise Rejected(ErrorCode.INVALID_AMOUNT,
                               f"{where}.det_item_fee_sumamt {item.det_item_fee_sumamt} is not "
                               f"cnt × pric = {item.cnt * item.pric}")
            split = catalogue.classify(item.med_list_codg, item.cnt, item.pric)
            batch[item.feedetl_sn] = {"mdtrt_id": item.mdtrt_id, **_split_dict(split)}
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
        return self._answer(row, req.msgid, {"result": results}, ctx)

    def _settle(self, req: Request, inp: Any, ctx: dict[str, Any],
                row: TreatmentRow) -> tuple[Outcome, TreatmentRow | None]:
        visit = self._visit(row, inp.mdtrt_id, req)
        if not visit["fees"]:
            raise Rejected(ErrorCode.NO_FEES, f"visit {inp.mdtrt_id} has no uploaded fees")
        totals = fee_totals(visit)
        if inp.medfee_sumamt != totals.medfee_sumamt:
            raise Rejected(ErrorCode.AMOUNT_MISMATCH,
                           f"input.medfee_sumamt {inp.medfee_sumamt} differs from the uploaded "
                           f"fees' total {totals.medfee_sumamt}")
        ctx["fees"] = totals.as_dict()
        to = "national" if ctx["route"] == CROSS else "insured"
        return Forward(to, req.model_dump(), ctx), None

    # -- answers coming back ----------------------------------------------------------------
    def handle_answer(self, ans: dict[str, Any], ctx: dict[str, Any],
                      row: TreatmentRow | None) -> TreatmentRow | None:
        """Record a successful settlement against its visit, and its answer for duplicates of
        the request; return the row if it changed."""
        if ctx.get("infno") != Infno.OUTPATIENT_SETTLE or ans["infcode"] != 0 or row is None:
            return None
        setlinfo = ans["output"]["setlinfo"]
        visit = row.visits.get(setlinfo["mdtrt_id"])
        if visit is None or ctx["msgid"] in row.answers:
            return None
        visit["setl_id"] = setlinfo["setl_id"]
        row.answers[ctx["msgid"]] = ans
        return row


def _split_dict(split: ItemSplit) -> dict[str, int]:
    return {"amount": split.amount, "fulamt_ownpay_amt": split.fulamt_ownpay_amt,
            "overlmt_selfpay": split.overlmt_selfpay, "preselfpay_amt": split.preselfpay_amt,
            "inscp_scp_amt": split.inscp_scp_amt}


def fee_totals(visit: dict[str, Any]) -> FeeTotals:
    fees = visit["fees"].values()
    return FeeTotals(
        medfee_sumamt=sum(f["amount"] for f in fees),
        fulamt_ownpay_amt=sum(f["fulamt_ownpay_amt"] for f in fees),
        overlmt_selfpay=sum(f["overlmt_selfpay"] for f in fees),
        preselfpay_amt=sum(f["preselfpay_amt"] for f in fees),
        inscp_scp_amt=sum(f["inscp_scp_amt"] for f in fees),
    )


"""Each transaction's input, and the output its answer carries (`OUTPUT_MODELS`, the wire
contract a HIS codes against), with NHSA field names. Money is integer fen on this wire (the
NHSA interface uses yuan with two decimals; huimin never carries money as a float)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from messages.codes import Infno
from messages.envelope import Day, InfTime, MsgId

#: Upper bound for any amount in fen (1 billion yuan): larger is an input error, not an overflow.
MAX_FEN = 100_000_000_000
#: What a fee cancellation (2205, 2302) names to cancel all of a visit's fees.
ALL_FEES = "0000"

CertType = Literal["01", "02", "03"]  # electronic voucher, ID number, social security card
Insutype = Literal["310", "390"]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN, strict=True)]
PositiveFen = Annotated[int, Field(gt=0, le=MAX_FEN, strict=True)]
#: The largest total of a period (3201, 3203): ¥10 trillion, past a year of the whole
#: national fund (a province-month of cross-province settlements passes MAX_FEN's ¥1 billion).
MAX_TOTAL_FEN = 1_000_000_000_000_000
#: A period's total net of cancellations, which may be below zero; and a net count.
NetFen = Annotated[int, Field(ge=-MAX_TOTAL_FEN, le=MAX_TOTAL_FEN, strict=True)]
NetCount = Annotated[int, Field(ge=-MAX_FEN, le=MAX_FEN, strict=True)]
PsnNo = Annotated[str, StringConstraints(pattern=r"^[0-9]{26}$")]
#: A visit's, a settlement's, a fee item's or an upload batch's identifier: letters, digits and
#: `_.-`, as a HIS writes them (answers echo them in errors, so no free text: a name is
#: refused).
HospitalId = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z_.\-]{1,30}$")]
MdtrtId = HospitalId
#: What a HIS writes in its own words (a department, a certificate number, an operator, a
#: MAC address): bounded, and no control, line-separator or bidirectional-override
#: characters, which answers echoing them would carry to a screen or a log.
_PLAIN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
Text64 = Annotated[str, StringConstraints(max_length=64, pattern=_PLAIN)]
Text50 = Annotated[str, StringConstraints(max_length=50, pattern=_PLAIN)]
Text30 = Annotated[str, StringConstraints(max_length=30, pattern=_PLAIN)]
CertNo = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_PLAIN)]
VisitNo = Annotated[str, StringConstraints(min_length=1, max_length=30, pattern=_PLAIN)]
#: A month a statement or an accumulator query names (yyyyMM), in the years dates may name.
_YEAR_MONTH = r"^(19|2[0-9])[0-9]{2}(0[1-9]|1[0-2])$"
YearMonth = Annotated[str, StringConstraints(pattern=_YEAR_MONTH)]
#: What a refusal says of a value that does not match these patterns, in words.
PATTERNS_IN_WORDS = {_PLAIN: "holds a control, line-separator or bidirectional-override "
                             "character",
                     _YEAR_MONTH: "should be a month, yyyyMM, of the years 1900–2999"}
OutpatientMedType = Literal["11", "13"]  # 普通门诊, 急诊 (emergency)
InpatientMedType = Literal["21", "24"]  # 普通住院, 急诊转住院 (emergency admission)
EMERGENCY_MED_TYPES = frozenset({"13", "24"})


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignInInput(_Input):
    """9001: a hospital signs in (签到) before its day's transactions; keyed by fixmedins_code."""

    opter_no: VisitNo
    mac: Text64 = ""
    ip: Text64 = ""


class PersonInfoInput(_Input):
    """1101: identify the patient by a certificate; the answer says who insures them."""

    mdtrt_cert_type: CertType
    mdtrt_cert_no: CertNo
    card_sn: Text64 = ""
    begntime: InfTime
    psn_cert_type: Literal["01"] = "01"
    certno: str = Field(min_length=18, max_length=18)


class RegisterInput(_Input):
    """2201: outpatient registration; answered with a `mdtrt_id`."""

    psn_no: PsnNo
    insutype: Insutype
    begntime: InfTime
    mdtrt_cert_type: CertType
    mdtrt_cert_no: CertNo
    ipt_otp_no: VisitNo
    dept_code: Text30 = ""
    med_type: OutpatientMedType = "11"


class RegisterCancelInput(_Input):
    """2202: cancel an outpatient registration that has no settlement."""

    psn_no: PsnNo
    mdtrt_id: MdtrtId
    ipt_otp_no: VisitNo


class AdmitInput(_Input):
    """2401: inpatient admission (入院登记); answered with a `mdtrt_id`."""

    psn_no: PsnNo
    insutype: Insutype
    mdtrt_cert_type: CertType
    mdtrt_cert_no: CertNo
    med_type: InpatientMedType = "21"
    ipt_no: VisitNo
    begntime: InfTime
    adm_dept_codg: Text30 = ""


class DischargeInput(_Input):
    """2402: inpatient discharge (出院办理); settlement needs it."""

    mdtrt_id: MdtrtId
    psn_no: PsnNo
    endtime: InfTime
    dscg_way: Text30 = "1"


class FeeDetail(_Input):
    """One item of a 2204/2301 upload. `det_item_fee_sumamt` must equal `cnt * pric`. Its
    `feedetl_sn` and `chrg_bchno` may not be "0000", which names all of them in 2205/2302."""

    feedetl_sn: HospitalId
    mdtrt_id: MdtrtId
    psn_no: PsnNo
    chrg_bchno: HospitalId = "1"
    med_type: OutpatientMedType | InpatientMedType | None = None  # left out: its visit's
    fee_ocur_time: InfTime
    med_list_codg: Annotated[str, StringConstraints(min_length=1, max_length=50,
                                                    pattern=_PLAIN)]
    medins_list_codg: Text50 = ""
    det_item_fee_sumamt: Fen
    cnt: Annotated[int, Field(gt=0, le=100_000, strict=True)]
    pric: PositiveFen

    @field_validator("feedetl_sn", "chrg_bchno")
    @classmethod
    def _not_all(cls, value: str) -> str:
        if value == ALL_FEES:
            raise ValueError(f"{ALL_FEES} names all of a visit's fees in a cancellation "
                             "(2205, 2302): not one item's or batch's")
        return value


class FeeUploadInput(_Input):
    """2204 / 2301: fee details of a registered visit or stay, classified by the
    treatment-province catalogue."""

    feedetail: list[FeeDetail] = Field(min_length=1, max_length=500)


class _FeeCancel(_Input):
    mdtrt_id: MdtrtId
    psn_no: PsnNo


class FeeCancelInput(_FeeCancel):
    """2205: cancel the fee details of one upload batch (`chrg_bchno`), or all with "0000"."""

    chrg_bchno: HospitalId


class InpatientFeeCancelInput(_FeeCancel):
    """2302: cancel one fee item of a stay (`feedetl_sn`), or all with "0000" (住院费用明细撤销)."""

    feedetl_sn: HospitalId


class SettleInput(_Input):
    """2206 / 2207: outpatient pre-settlement / settlement of a registered visit's fees."""

    psn_no: PsnNo
    mdtrt_cert_type: CertType
    mdtrt_cert_no: CertNo
    med_type: OutpatientMedType = "11"
    medfee_sumamt: Fen
    psn_setlway: Literal["01"] = "01"
    mdtrt_id: MdtrtId
    insutype: Insutype
    acct_used_flag: Literal["0", "1"]


class InpatientSettleInput(SettleInput):
    """2303 / 2304: inpatient pre-settlement / settlement of a discharged stay."""

    med_type: InpatientMedType = "21"  # type: ignore[assignment]
    mid_setl_flag: Literal["0"] = "0"


class SettleCancelInput(_Input):
    """2208 / 2305: cancel a settlement once; accumulators, balance and ledger are restored."""

    setl_id: HospitalId  # the platform's, as the hospital keeps it
    mdtrt_id: MdtrtId
    psn_no: PsnNo


class ReversalInput(_Input):
    """2601 冲正: reverse the transaction `omsgid` whose answer was lost."""

    psn_no: PsnNo
    omsgid: MsgId
    oinfno: str = Field(pattern=r"^[0-9]{4}$")


class _Period(_Input):
    """A statement period: from its first day to its last, in that order."""

    stmt_begndate: Day
    stmt_enddate: Day

    @model_validator(mode="after")
    def _begins_before_it_ends(self) -> _Period:
        if self.stmt_enddate < self.stmt_begndate:  # yyyy-MM-dd: as text, as dates
            raise ValueError("stmt_enddate is before stmt_begndate")
        return self


class ReconcileTotalsInput(_Period):
    """3201 对总账: the hospital's own totals of its settlements over a period (event dates,
    net of cancellations and reversals in the period)."""

    medfee_sumamt: NetFen
    fund_pay_sumamt: NetFen
    acct_pay: NetFen
    fixmedins_setl_cnt: NetCount


class ReconcileDetailsInput(_Period):
    """3202 对明细账: the setl_ids the hospital holds in force for settlements of a period."""

    setl_ids: list[HospitalId] = Field(max_length=100_000)


class ClearingApplicationInput(_Input):
    """3203 清算申请 by a treatment-province agency: clear month `clr_ym` (yyyyMM) of its
    province `clr_optins`, applying for `fund_appy_sum` — what its hospitals paid out of other
    provinces' funds that month, net of cancellations — over `setl_cnt` net settlements."""

    clr_ym: YearMonth
    clr_optins: str = Field(pattern=r"^[0-9]{2}0000$")
    fund_appy_sum: NetFen
    setl_cnt: NetCount


Purpose = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,10}$")]  # v3 ActReason code
LOINC_SYSTEM = "http://loinc.org"


class EhrPublishInput(_Input):
    """7001 (ITI-65): a FHIR R4 resource — an MHD provide transaction, a document Bundle, or
    any other valid resource or Bundle, kept as published."""

    resource: dict[str, Any]


class EhrFindInput(_Input):
    """7002 (ITI-67): the person's DocumentReferences in every province, for a purpose."""

    patient_identifier: str  # system|value, the certno system
    purpose: Purpose
    #: a document type's code (LOINC), or `http://loinc.org|<code>` as FHIR clients write a
    #: token: kept as the code (a token read whole matched nothing, silently)
    type: str | None = None
    date_from: Day | None = None  # the DocumentReference's date (when it was published)

    @field_validator("type")
    @classmethod
    def _a_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        system, bar, code = value.rpartition("|")
        if bar and system != LOINC_SYSTEM:  # `|code` is a code of no system: none is one
            raise ValueError(f"a document type is a LOINC code, or {LOINC_SYSTEM}|<code>")
        if not re.fullmatch(r"[A-Za-z0-9.\-]{1,64}", code):
            raise ValueError("a document type's code is 1–64 letters, digits, '.' or '-'")
        return code


class EhrRetrieveInput(_Input):
    """7003 (ITI-68): one document, as it was published."""

    #: a FHIR id (ours are UUIDs): it goes into the AuditEvent of the access as it is
    document_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    purpose: Purpose


class EhrLabLookupInput(_Input):
    """7004: recognised results of these LOINC tests within their validity window."""

    loinc: list[str] = Field(min_length=1, max_length=50)
    purpose: Purpose


class AccumulatorsInput(_Input):
    """5206: the person's year-to-date accumulators for the year of `cum_ym` (yyyyMM)."""

    psn_no: PsnNo
    cum_ym: YearMonth


INPUT_MODELS: dict[str, type[_Input]] = {
    Infno.SIGN_IN: SignInInput,
    Infno.PERSON_INFO: PersonInfoInput,
    Infno.OUTPATIENT_REGISTER: RegisterInput,
    Infno.OUTPATIENT_REGISTER_CANCEL: RegisterCancelInput,
    Infno.FEE_UPLOAD: FeeUploadInput,
    Infno.FEE_UPLOAD_CANCEL: FeeCancelInput,
    Infno.OUTPATIENT_PRESETTLE: SettleInput,
    Infno.OUTPATIENT_SETTLE: SettleInput,
    Infno.OUTPATIENT_SETTLE_CANCEL: SettleCancelInput,
    Infno.INPATIENT_ADMIT: AdmitInput,
    Infno.INPATIENT_FEE_UPLOAD: FeeUploadInput,
    Infno.INPATIENT_FEE_UPLOAD_CANCEL: InpatientFeeCancelInput,
    Infno.INPATIENT_DISCHARGE: DischargeInput,
    Infno.INPATIENT_PRESETTLE: InpatientSettleInput,
    Infno.INPATIENT_SETTLE: InpatientSettleInput,
    Infno.INPATIENT_SETTLE_CANCEL: SettleCancelInput,
    Infno.REVERSAL: ReversalInput,
    Infno.RECONCILE_TOTALS: ReconcileTotalsInput,
    Infno.RECONCILE_DETAILS: ReconcileDetailsInput,
    Infno.CLEARING_APPLICATION: ClearingApplicationInput,
    Infno.ACCUMULATORS: AccumulatorsInput,
    Infno.EHR_PUBLISH: EhrPublishInput,
    Infno.EHR_FIND: EhrFindInput,
    Infno.EHR_RETRIEVE: EhrRetrieveInput,
    Infno.EHR_LAB_LOOKUP: EhrLabLookupInput,
}

# -- outputs ----------------------------------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignInResult(_Output):
    sign_time: InfTime
    sign_no: str


class SignInOutput(_Output):
    signinoutb: SignInResult


class BaseInfo(_Output):
    psn_no: PsnNo
    psn_cert_type: str
    certno: str
    gend: str
    brdy: str


class InsuInfo(_Output):
    insutype: Insutype
    balc: Fen
    psn_type: str
    psn_insu_stas: str
    insuplc_admdvs: str


class FileInfo(_Output):
    """A filing (异地就医备案) for medical treatment in another province."""

    fil_type: Literal["long-term", "referral"]
    mdtrtarea_prov: str
    begndate: str
    enddate: str


class PersonInfoOutput(_Output):
    baseinfo: BaseInfo
    insuinfo: list[InsuInfo]
    fileinfo: list[FileInfo]


class RegisterResult(_Output):
    mdtrt_id: str
    psn_no: PsnNo
    ipt_otp_no: str


class RegisterOutput(_Output):
    data: RegisterResult


class FeeResult(_Output):
    """One classified item: the four buckets sum to `det_item_fee_sumamt`."""

    feedetl_sn: str
    det_item_fee_sumamt: Fen
    cnt: int
    pric: Fen
    pric_uplmt_amt: Fen | None
    selfpay_prop_bp: int
    fulamt_ownpay_amt: Fen
    overlmt_amt: Fen
    preselfpay_amt: Fen
    inscp_scp_amt: Fen
    chrgitm_lv: Literal["01", "02", "03"]


class FeeUploadOutput(_Output):
    result: list[FeeResult]


class VisitAck(_Output):
    """2202 / 2205 / 2302 / 2402: what became of the visit."""

    mdtrt_id: str
    status: Literal["cancelled", "fees-cancelled", "discharged"]
    cancelled_items: int = 0


class SetlInfo(_Output):
    """A settlement (2207 `setlinfo`): compared field by field with the oracle."""

    setl_id: str
    mdtrt_id: str
    psn_no: PsnNo
    insutype: Insutype
    med_type: str
    setl_time: InfTime
    medfee_sumamt: Fen
    fulamt_ownpay_amt: Fen
    overlmt_selfpay: Fen
    preselfpay_amt: Fen
    inscp_scp_amt: Fen
    act_pay_dedc: Fen
    hifp_pay: Fen
    fund_pay_sumamt: Fen
    psn_part_amt: Fen
    acct_pay: Fen
    psn_cash_pay: Fen
    balc: Fen
    clr_type: str
    insuplc_admdvs: str
    mdtrtarea_admvs: str


class SettleOutput(_Output):
    """2207/2304, and 2206/2303 (pre-settlement: the same numbers, `setl_id` empty)."""

    setlinfo: SetlInfo


class CancelInfo(_Output):
    """2208/2305: the cancellation, with the restored amounts as negative fen."""

    setl_id: str
    init_setl_id: str
    mdtrt_id: str
    psn_no: PsnNo
    setl_time: InfTime
    medfee_sumamt: int
    hifp_pay: int
    fund_pay_sumamt: int
    acct_pay: int
    psn_cash_pay: int
    balc: Fen


class CancelOutput(_Output):
    setlinfo: CancelInfo


class ReversalOutput(_Output):
    omsgid: str
    oinfno: str
    result: Literal["undone", "nothing-to-undo", "reversed-in-advance"]
    reversed_setl_id: str = ""


class ReconcileTotalsOutput(_Output):
    stmt_rslt: Literal["0", "1"]  # 0 平 balanced, 1 不平 not
    stmt_rslt_dscr: str
    differences: dict[str, int]  # platform − hospital, for the totals that differ


class _SettlementMoney(_Output):
    """What 3202 details of a settlement, whatever became of it: where, and its money."""

    setl_id: str
    insuplc_admdvs: str
    mdtrtarea_admvs: str
    medfee_sumamt: Fen
    hifp_pay: Fen
    fund_pay_sumamt: Fen
    acct_pay: Fen


class SettlementDetail(_SettlementMoney):
    """A settlement the platform holds, as 3202 details it for the hospital to post."""

    setl_time: str


class UndoingDetail(_SettlementMoney):
    """A cancellation or reversal of the period, as 3202 details it: a hospital that lost
    its answer posts it (docs/design.md). Its time is the undoing's."""

    event: Literal["cancel", "reverse"]
    event_time: str


class ReconcileDetailsOutput(_Output):
    missing_at_hospital: list[str]
    missing_on_platform: list[str]
    details: list[SettlementDetail]  # of missing_at_hospital, for the hospital to post
    undone: list[UndoingDetail] = []  # the period's cancellations and reversals


class ClearingApplicationOutput(_Output):
    clr_ym: str
    clr_optins: str
    appy_stas: Literal["1", "2"]  # 1 受理 accepted, 2 不予受理 refused (sum or count differs)
    fund_appy_sum: int
    fund_clr_sum: int  # what the national platform clears to the province's agency
    setl_cnt: int  # the platform's net count of the province's cross-province settlements
    differences: dict[str, int]  # platform − agency, for what differs
    hospitals: list[dict[str, Any]]  # fixmedins_code, amount: what the agency owes each


class FhirResource(BaseModel):
    """7001–7003 answer with a FHIR R4 resource (a transaction-response or searchset Bundle,
    the document itself, or an OperationOutcome when refused); it is valid R4B."""

    model_config = ConfigDict(extra="allow")

    resourceType: str


class ReusableLab(_Output):
    loinc: str
    time: str  # the result's effectiveDateTime
    province: str  # where it is held
    doc_id: str
    value: float | int
    unit: str
    saving: Fen  # the price of the test not repeated


class LabLookupOutput(_Output):
    window_days: int
    reusable: list[ReusableLab]
    refused: dict[str, Any] | None = None  # OperationOutcome: sources the consent refused


class Accumulator(_Output):
    cum_type_code: str  # fund_11, fund_21 (fund paid by category), dedc_11 (deductible paid)
    cum: Fen


class AccumulatorsOutput(_Output):
    psn: str  # masked certno
    year: str
    cuminfo: list[Accumulator]


OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    Infno.SIGN_IN: SignInOutput,
    Infno.PERSON_INFO: PersonInfoOutput,
    Infno.OUTPATIENT_REGISTER: RegisterOutput,
    Infno.OUTPATIENT_REGISTER_CANCEL: VisitAck,
    Infno.FEE_UPLOAD: FeeUploadOutput,
    Infno.FEE_UPLOAD_CANCEL: VisitAck,
    Infno.OUTPATIENT_PRESETTLE: SettleOutput,
    Infno.OUTPATIENT_SETTLE: SettleOutput,
    Infno.OUTPATIENT_SETTLE_CANCEL: CancelOutput,
    Infno.INPATIENT_ADMIT: RegisterOutput,
    Infno.INPATIENT_FEE_UPLOAD: FeeUploadOutput,
    Infno.INPATIENT_FEE_UPLOAD_CANCEL: VisitAck,
    Infno.INPATIENT_DISCHARGE: VisitAck,
    Infno.INPATIENT_PRESETTLE: SettleOutput,
    Infno.INPATIENT_SETTLE: SettleOutput,
    Infno.INPATIENT_SETTLE_CANCEL: CancelOutput,
    Infno.REVERSAL: ReversalOutput,
    Infno.RECONCILE_TOTALS: ReconcileTotalsOutput,
    Infno.RECONCILE_DETAILS: ReconcileDetailsOutput,
    Infno.CLEARING_APPLICATION: ClearingApplicationOutput,
    Infno.ACCUMULATORS: AccumulatorsOutput,
    Infno.EHR_PUBLISH: FhirResource,
    Infno.EHR_FIND: FhirResource,
    Infno.EHR_RETRIEVE: FhirResource,
    Infno.EHR_LAB_LOOKUP: LabLookupOutput,
}

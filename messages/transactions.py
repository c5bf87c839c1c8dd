"""Inputs of each transaction, with NHSA field names. Money is integer fen on this wire
(the NHSA interface uses yuan with two decimals; huimin never carries money as a float)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from messages.codes import Infno
from messages.envelope import InfTime

#: Upper bound for any amount in fen (1 billion yuan): larger is an input error, not an overflow.
MAX_FEN = 100_000_000_000

CertType = Literal["01", "02", "03"]  # electronic voucher, ID number, social security card
Insutype = Literal["310", "390"]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN, strict=True)]
PositiveFen = Annotated[int, Field(gt=0, le=MAX_FEN, strict=True)]
PsnNo = Annotated[str, StringConstraints(pattern=r"^\d{26}$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignInInput(_Input):
    """9001: a hospital signs in (签到) before its day's transactions; keyed by fixmedins_code."""

    opter_no: str = Field(min_length=1, max_length=30)
    mac: str = ""
    ip: str = ""


class PersonInfoInput(_Input):
    """1101: identify the patient by a certificate; the answer says who insures them."""

    mdtrt_cert_type: CertType
    mdtrt_cert_no: str = Field(min_length=1, max_length=64)
    card_sn: str = ""
    begntime: InfTime
    psn_cert_type: Literal["01"] = "01"
    certno: str = Field(min_length=18, max_length=18)


class RegisterInput(_Input):
    """2201: outpatient registration; answered with a `mdtrt_id`."""

    psn_no: PsnNo
    insutype: Insutype
    begntime: InfTime
    mdtrt_cert_type: CertType
    mdtrt_cert_no: str = Field(min_length=1, max_length=64)
    ipt_otp_no: str = Field(min_length=1, max_length=30)
    dept_code: str = ""
    med_type: Literal["11"] = "11"


class FeeDetail(_Input):
    """One item of a 2204 upload. `det_item_fee_sumamt` must equal `cnt * pric`."""

    feedetl_sn: str = Field(min_length=1, max_length=30)
    mdtrt_id: str = Field(min_length=1, max_length=30)
    psn_no: PsnNo
    med_type: Literal["11"] = "11"
    fee_ocur_time: InfTime
    med_list_codg: str = Field(min_length=1, max_length=50)
    medins_list_codg: str = ""
    det_item_fee_sumamt: Fen
    cnt: Annotated[int, Field(gt=0, le=100_000, strict=True)]
    pric: PositiveFen


class FeeUploadInput(_Input):
    """2204: fee details of a registered visit, classified by the treatment-province catalogue."""

    feedetail: list[FeeDetail] = Field(min_length=1, max_length=500)


class SettleInput(_Input):
    """2207: outpatient settlement of a registered visit whose fees were uploaded."""

    psn_no: PsnNo
    mdtrt_cert_type: CertType
    mdtrt_cert_no: str = Field(min_length=1, max_length=64)
    med_type: Literal["11"] = "11"
    medfee_sumamt: Fen
    psn_setlway: Literal["01"] = "01"
    mdtrt_id: str = Field(min_length=1, max_length=30)
    insutype: Insutype
    acct_used_flag: Literal["0", "1"]


INPUT_MODELS: dict[str, type[_Input]] = {
    Infno.SIGN_IN: SignInInput,
    Infno.PERSON_INFO: PersonInfoInput,
    Infno.OUTPATIENT_REGISTER: RegisterInput,
    Infno.FEE_UPLOAD: FeeUploadInput,
    Infno.OUTPATIENT_SETTLE: SettleInput,
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
    filed: bool


class PersonInfoOutput(_Output):
    baseinfo: BaseInfo
    insuinfo: list[InsuInfo]
    fileinfo: FileInfo


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
    setlinfo: SetlInfo


OUTPUT_MODELS: dict[str, type[_Output]] = {
    Infno.SIGN_IN: SignInOutput,
    Infno.PERSON_INFO: PersonInfoOutput,
    Infno.OUTPATIENT_REGISTER: RegisterOutput,
    Infno.FEE_UPLOAD: FeeUploadOutput,
    Infno.OUTPATIENT_SETTLE: SettleOutput,
}

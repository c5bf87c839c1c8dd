"""A small hand-built country for the platform tests, and request builders with the field names
of messages/transactions.py (the way messages/visitlog.py builds them).

Two provinces, one city each, one hospital each:

- 北京 110000, city 110100, hospital H11010000001 (level 3);
- 上海 310000, city 310100, hospital H31010000001 (level 1).

The two catalogues classify the same codes differently, so a test can tell which province's
catalogue (就医地目录) was used.
"""

from __future__ import annotations

from typing import Any

from messages.codes import ErrorCode
from messages.identity import certno_check_char
from messages.platform import CROSS, LOCAL
from messages.visitlog import make_msgid
from settlement.catalogue import Catalogue, CatalogueEntry, FeeTotals, ItemClass
from settlement.policy import EMPLOYEE, RESIDENT, InsurancePolicy
from settlement.reference import Enrollment, Filing, Hospital, ReferenceData

BJ, SH = "110000", "310000"
BJ_CITY, SH_CITY = "110100", "310100"
HOSP_BJ = Hospital("H11010000001", "北京01市第1医院", BJ_CITY, 3)
HOSP_SH = Hospital("H31010000001", "上海01市第1医院", SH_CITY, 1)


def certno(first17: str) -> str:
    return first17 + certno_check_char(first17)


#: The GB 11643 example ID: an in-service employee insured in Beijing.
EMP_CERTNO = "11010519491231002X"
#: A retired employee insured in Beijing.
RETIRED_CERTNO = certno("11010119500101001")
#: A resident insured in Shanghai, filed (备案) for living in Beijing from 2026 to 2028.
RES_CERTNO = certno("31010119800101002")

EMPLOYEE_BALANCE = 500_000
RETIRED_BALANCE = 80_000

RES_FILING = Filing("long-term", BJ, "2026-01-01", "2028-12-31")

ENROLLMENTS = {
    EMP_CERTNO: Enrollment(EMP_CERTNO, BJ_CITY + "1".zfill(20), EMPLOYEE, BJ_CITY,
                           retired=False, balance=EMPLOYEE_BALANCE, gend="2",
                           brdy="1949-12-31"),
    RETIRED_CERTNO: Enrollment(RETIRED_CERTNO, BJ_CITY + "2".zfill(20), EMPLOYEE, BJ_CITY,
                               retired=True, balance=RETIRED_BALANCE, gend="1",
                               brdy="1950-01-01"),
    RES_CERTNO: Enrollment(RES_CERTNO, SH_CITY + "3".zfill(20), RESIDENT, SH_CITY,
                           retired=False, balance=0, filings=(RES_FILING,), gend="2",
                           brdy="1980-01-01"),
}

# Codes: DA drug, DB and DB2 drugs of class B, SV service with a ceiling,
# CC consumable. UNLISTED is in no catalogue.
BJ_CATALOGUE = Catalogue(BJ, {
    "DA": CatalogueEntry("DA", "drug A", "drug", ItemClass.A),
    "DB": CatalogueEntry("DB", "drug B", "drug", ItemClass.B),
    "DB2": CatalogueEntry("DB2", "drug B2", "drug", ItemClass.B),
    "SV": CatalogueEntry("SV", "service", "service", ItemClass.A, ceiling=450_000),
    "CC": CatalogueEntry("CC", "consumable", "consumable", ItemClass.C),
}, selfpay_bp=1000)
SH_CATALOGUE = Catalogue(SH, {
    "DA": CatalogueEntry("DA", "drug A", "drug", ItemClass.C),  # Shanghai does not cover DA
    "DB": CatalogueEntry("DB", "drug B", "drug", ItemClass.A),  # and fully covers DB
}, selfpay_bp=1500)


def reference_data() -> ReferenceData:
    return ReferenceData(
        hospitals={h.fixmedins_code: h for h in (HOSP_BJ, HOSP_SH)},
        catalogues={BJ: BJ_CATALOGUE, SH: SH_CATALOGUE},
        policies={BJ: InsurancePolicy(BJ), SH: InsurancePolicy(SH)},
        enrollments=dict(ENROLLMENTS),
        provinces={BJ: "北京", SH: "上海"},
    )


def request(infno: str, hospital: Hospital, inf_time: str, seq: int, inp: dict[str, Any],
            insuplc_admdvs: str = "") -> dict[str, Any]:
    """A hospital request envelope (DOMAIN.md §2) with a 30-character msgid."""
    return {
        "infno": infno,
        "msgid": make_msgid(hospital.fixmedins_code, inf_time, seq),
        "mdtrtarea_admvs": hospital.admdvs,
        "insuplc_admdvs": insuplc_admdvs,
        "fixmedins_code": hospital.fixmedins_code,
        "inf_time": inf_time,
        "input": inp,
    }


def person_info_input(cert: str, begntime: str) -> dict[str, Any]:
    return {"mdtrt_cert_type": "02", "mdtrt_cert_no": cert, "begntime": begntime,
            "psn_cert_type": "01", "certno": cert}


def register_input(e: Enrollment, begntime: str, visit_no: int = 1,
                   med_type: str = "11") -> dict[str, Any]:
    return {"psn_no": e.psn_no, "insutype": e.insutype, "begntime": begntime,
            "mdtrt_cert_type": "02", "mdtrt_cert_no": e.certno,
            "ipt_otp_no": f"MZ{visit_no:010d}", "med_type": med_type}


def admit_input(e: Enrollment, begntime: str, visit_no: int = 1,
                med_type: str = "21") -> dict[str, Any]:
    """2401 inpatient admission."""
    return {"psn_no": e.psn_no, "insutype": e.insutype, "mdtrt_cert_type": "02",
            "mdtrt_cert_no": e.certno, "med_type": med_type, "ipt_no": f"ZY{visit_no:010d}",
            "begntime": begntime}


def discharge_input(e: Enrollment, mdtrt_id: str, endtime: str) -> dict[str, Any]:
    """2402 inpatient discharge."""
    return {"mdtrt_id": mdtrt_id, "psn_no": e.psn_no, "endtime": endtime, "dscg_way": "1"}


def fee_input(e: Enrollment, mdtrt_id: str, fee_time: str,
              items: list[tuple[str, str, int, int]], chrg_bchno: str = "1",
              med_type: str = "11") -> dict[str, Any]:
    """`items` are (feedetl_sn, med_list_codg, cnt, pric)."""
    return {"feedetail": [
        {"feedetl_sn": sn, "mdtrt_id": mdtrt_id, "psn_no": e.psn_no, "chrg_bchno": chrg_bchno,
         "med_type": med_type, "fee_ocur_time": fee_time, "med_list_codg": code,
         "medins_list_codg": code, "det_item_fee_sumamt": cnt * pric, "cnt": cnt, "pric": pric}
        for sn, code, cnt, pric in items]}


def fee_cancel_input(e: Enrollment, mdtrt_id: str, chrg_bchno: str = "0000") -> dict[str, Any]:
    """2205: cancel one upload batch, or all fees with "0000"."""
    return {"mdtrt_id": mdtrt_id, "chrg_bchno": chrg_bchno, "psn_no": e.psn_no}


def register_cancel_input(e: Enrollment, mdtrt_id: str, visit_no: int = 1) -> dict[str, Any]:
    """2202: cancel an outpatient registration."""
    return {"psn_no": e.psn_no, "mdtrt_id": mdtrt_id, "ipt_otp_no": f"MZ{visit_no:010d}"}


def settle_input(e: Enrollment, mdtrt_id: str, medfee_sumamt: int,
                 acct_used_flag: str = "1", med_type: str = "11") -> dict[str, Any]:
    """2206/2207; with an inpatient `med_type` (21, 24) also 2303/2304."""
    inp = {"psn_no": e.psn_no, "mdtrt_cert_type": "02", "mdtrt_cert_no": e.certno,
           "med_type": med_type, "medfee_sumamt": medfee_sumamt, "psn_setlway": "01",
           "mdtrt_id": mdtrt_id, "insutype": e.insutype, "acct_used_flag": acct_used_flag}
    if med_type.startswith("2"):
        inp["mid_setl_flag"] = "0"
    return inp


def settle_cancel_input(e: Enrollment, setl_id: str, mdtrt_id: str) -> dict[str, Any]:
    """2208/2305."""
    return {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": e.psn_no}


def reversal_input(e: Enrollment, omsgid: str, oinfno: str) -> dict[str, Any]:
    """2601 冲正 of the transaction `omsgid`."""
    return {"psn_no": e.psn_no, "omsgid": omsgid, "oinfno": oinfno}


def accumulators_input(e: Enrollment, cum_ym: str) -> dict[str, Any]:
    """5206 for the year of `cum_ym` (yyyyMM)."""
    return {"psn_no": e.psn_no, "cum_ym": cum_ym}


def settle_request(e: Enrollment, hospital: Hospital, inf_time: str, seq: int, mdtrt_id: str,
                   medfee_sumamt: int, acct_used_flag: str = "1") -> dict[str, Any]:
    return request("2207", hospital, inf_time, seq,
                   settle_input(e, mdtrt_id, medfee_sumamt, acct_used_flag), e.insuplc_admdvs)


def settle_ctx(req: dict[str, Any], hospital: Hospital, fees: FeeTotals) -> dict[str, Any]:
    """The context the treatment side attaches to a 2207 it forwards to the insured place."""
    return {**forward_ctx(req, hospital), "fees": fees.as_dict()}


def forward_ctx(req: dict[str, Any], hospital: Hospital) -> dict[str, Any]:
    """The context the treatment side attaches to any request it forwards to the insured place
    (a settlement also carries the classified `fees`)."""
    cross = req["mdtrtarea_admvs"][:2] != (req["insuplc_admdvs"] or hospital.admdvs)[:2]
    return {"infno": req["infno"], "msgid": req["msgid"], "fixmedins_code": hospital.fixmedins_code,
            "mdtrtarea_admvs": req["mdtrtarea_admvs"], "insuplc_admdvs": req["insuplc_admdvs"],
            "route": CROSS if cross else LOCAL, "hosp_lv": hospital.level}


def ok(answer: dict[str, Any]) -> dict[str, Any]:
    """The output of a successful answer (fails the test otherwise)."""
    assert answer["infcode"] == 0, answer
    return answer["output"]


def refused(answer: dict[str, Any], code: ErrorCode) -> str:
    """The err_msg of a refusal with `code` (fails the test otherwise)."""
    assert answer["infcode"] == -1, answer
    assert answer["err_code"] == code, answer
    assert answer["output"] == {}
    return answer["err_msg"]


def document_in(resource: dict[str, Any]) -> dict[str, Any]:
    """What a repository keeps of a publish: the document an MHD transaction's
    DocumentReference points at, else the resource as published."""
    if resource.get("type") != "transaction":
        return resource
    entries = {e.get("fullUrl"): e["resource"] for e in resource["entry"]}
    for r in entries.values():
        if r["resourceType"] == "DocumentReference":
            return entries[r["content"][0]["attachment"]["url"]]
    return resource

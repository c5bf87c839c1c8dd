"""The national platform's routing role: the person index (certno -> insured place) decides
where a cross-province request goes, and answers come back the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messages.codes import ErrorCode, Infno
from messages.envelope import error_answer, province_of
from messages.identity import mask_certno
from settlement.reference import ReferenceData


@dataclass(frozen=True, slots=True)
class ToInsured:
    req: dict[str, Any]
    ctx: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BackToTreatment:
    answer: dict[str, Any]
    ctx: dict[str, Any]


class NationalPlatform:
    def __init__(self, ref: ReferenceData) -> None:
        # The national person index: which province insures each person.
        self.index = {certno: e.insuplc_admdvs for certno, e in ref.enrollments.items()}

    def route(self, certno: str, req: dict[str, Any],
              ctx: dict[str, Any]) -> ToInsured | BackToTreatment:
        insuplc = self.index.get(certno)
        if insuplc is None:
            return BackToTreatment(error_answer(
                req["msgid"], ErrorCode.UNKNOWN_PERSON,
                f"{mask_certno(certno)} is not in the national person index"), ctx)
        if req["infno"] == Infno.PERSON_INFO:
            ctx["insuplc_admdvs"] = insuplc
        elif province_of(req["insuplc_admdvs"]) != province_of(insuplc):
            return BackToTreatment(error_answer(
                req["msgid"], ErrorCode.INSURED_PLACE_MISMATCH,
                f"insuplc_admdvs {req['insuplc_admdvs']} is not where the person is insured"), ctx)
        return ToInsured(req, ctx)

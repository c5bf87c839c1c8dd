"""Deterministic identifiers issued by the platform: the same request always gets the same id,
so a replayed request and the oracle agree without shared counters."""

from __future__ import annotations

from hashlib import blake2b


def _digest(text: str) -> str:
    return blake2b(text.encode(), digest_size=8).hexdigest().upper()


def mdtrt_id_for(treatment_admdvs: str, psn_no: str, register_msgid: str) -> str:
    """就诊ID issued at registration: treatment city + 16 hex of the person and the 2201
    msgid (a msgid a hospital wrongly used for two persons still gives two visits)."""
    return treatment_admdvs + _digest(psn_no + register_msgid)


def setl_id_for(insured_admdvs: str, psn_no: str, settle_msgid: str) -> str:
    """结算ID issued by the insured place: insured city + 16 hex of the person and the
    settling msgid (two persons' settlements never share an id, so clearing counts both)."""
    return insured_admdvs + _digest(psn_no + settle_msgid)


def sign_no_for(sign_in_msgid: str) -> str:
    """签到编号 of a hospital's 9001 sign-in."""
    return "SN" + _digest(sign_in_msgid)

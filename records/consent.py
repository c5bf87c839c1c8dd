"""Consent decisions (DOMAIN.md §6): who may read a person's records, for what purpose.

Health records are shared for treatment only (谁使用、谁负责: the reader states a purpose and
answers for it), and only where the person's Consent in force permits it: with none in
force, no one reads them. The register's Consent permits treatment within the province that
holds the records, and across provinces unless the person denies that; emergency treatment
reads past such a denial (its provision names routine treatment, `consent_resource`), and
is audited as break-the-glass. Payment and research purposes are refused: DOMAIN.md shares
records for care, not for other uses.

The Consent in force is the latest the person published (a FHIR Consent about them in a 7001,
`published_consent`), else the one the insurance register holds (the world's); with neither,
or once a published one lapsed or was withdrawn, none is in force and no one reads the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from records.codes import (
    ACT_REASON,
    CERTNO_SYSTEM,
    ETREAT,
    HPAYMT,
    HRESCH,
    PURPOSE_OF_USE,
    PURPOSES,
    TREAT,
)
from settlement.reference import DENY_CROSS_REGION, PERMIT

#: Names "every institution outside this province" as a Consent's actor (the value an admdvs):
#: the register's denial of cross-region sharing, as `consent_resource` writes it.
OUTSIDE_PROVINCE_SYSTEM = "urn:huimin:outside-admdvs"
#: The code system of a Consent's `scope` (`patient-privacy`).
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
#: Beijing time, in which the hospitals' inf_time is written.
BEIJING = timezone(timedelta(hours=8))
#: What a provision may be limited by that this model cannot hold.
_LIMITS = ("actor", "data", "class", "code", "securityLabel", "dataPeriod")
#: Actions (consentaction) under which a permit lets records be read.
_READING = frozenset({"access", "use", "disclose"})

#: No Consent in force: none on the register or published, or a published one withdrawn
#: (status not active) or past its period's end.
NO_CONSENT = "none"
#: A published Consent that denies readers outside a province even for emergency treatment
#: (its denial names no purpose, or names ETREAT). A published denial of readers outside a
#: province is kept with the province it names, `deny-cross-region@310000`; the register's
#: (no `@`) is of readers outside the province that holds the records.
DENY_CROSS_REGION_ALWAYS = "deny-cross-region-always"
#: A published Consent that denies reading to everyone, or to readers the model cannot tell
#: apart (a denial of one hospital, of some data; a permit narrower than treatment by anyone):
#: no one is permitted what the person may have withheld.
DENY_ALL = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    permitted: bool
    reason: str  # says why, without personal data
    break_glass: bool = False


def decide(sharing: str, purpose: str, requester_province: str,
           source_province: str) -> Decision:
    if purpose not in (TREAT, ETREAT):
        # a code of the sender's own choosing is not echoed: the pattern lets a name through
        named = (f"purpose of use {purpose} ({PURPOSES[purpose]})" if purpose in PURPOSES
                 else f"purpose of use {purpose}" if purpose in PURPOSE_OF_USE
                 else "a purpose of use not among v3-ActReason's")
        return Decision(False, f"{named} is not permitted: records are shared for treatment "
                               "only")
    if sharing == NO_CONSENT:  # DOMAIN.md §6: only where the person's Consent permits
        return Decision(False, "no consent of the person's in force permits reading their "
                               "records")
    if sharing == DENY_ALL:
        return Decision(False, "the person's consent denies reading their records held in "
                               f"{source_province}")
    if sharing == PERMIT:
        return Decision(True, "treatment within the province that holds the records"
                        if requester_province == source_province else
                        "cross-region treatment, permitted by the person's consent")
    # a denial of readers outside a province: the one a published Consent names, else
    # (the register's) the one that holds the records
    sharing, _, named = sharing.partition("@")
    if requester_province == (named or source_province):
        return Decision(True, "treatment within the province that holds the records"
                        if not named else "treatment within the province the person's "
                        "consent keeps their records to")
    if purpose == ETREAT and sharing == DENY_CROSS_REGION:  # a denial of routine treatment
        return Decision(True, "emergency treatment reads past the denial of cross-region "
                              "sharing (break-the-glass)", break_glass=True)
    even = " even for emergency treatment" if purpose == ETREAT else ""
    return Decision(False, f"the person's consent denies sharing records held in "
                           f"{source_province} with {requester_province}{even}")


def _object(value: Any) -> dict[str, Any]:
    """A JSON object where one is expected, else an empty one (what is not there allows
    nothing and limits nothing)."""
    return value if isinstance(value, dict) else {}


def _provisions(provision: dict[str, Any]) -> list[dict[str, Any]]:
    out, todo = [], [provision]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [n for n in p.get("provision") or [] if isinstance(n, dict)]
    return out


def _codes(concept: Any, system: str | None = None) -> set[str]:
    """The codes of a CodeableConcept's codings (of `system`); a coding without a code (a
    `display` alone is valid R4) counts as "", a code no rule knows: a policy rule or a role
    the model cannot read then shares nothing (a review found a mypy edit dropping them,
    which read such an opt-out as a permit)."""
    return {c["code"] if isinstance(c.get("code"), str) else ""
            for c in (concept or {}).get("coding") or []
            if isinstance(c, dict) and (system is None or c.get("system") == system)}


def _limited(provision: dict[str, Any]) -> bool:
    """A permit that lets less than treatment by anyone read the records: limited by actor,
    data, class, code, security label or data period, to purposes other than treatment, or
    to actions other than reading. The model holds one choice a person, so such a permit is
    read as a denial to everyone (DENY_ALL), the reading that shares nothing withheld."""
    if provision.get("type") == "deny":
        return False  # a denial, read as one
    if any(provision.get(k) for k in _LIMITS):
        return True
    purposes = provision.get("purpose")
    if isinstance(purposes, list) and purposes and not any(
            isinstance(c, dict) and c.get("system") == ACT_REASON and c.get("code") == TREAT
            for c in purposes):
        return True
    actions = provision.get("action")
    return isinstance(actions, list) and bool(actions) and not any(
        _codes(a) & _READING for a in actions if isinstance(a, dict))


#: Purposes of use (v3-ActReason) known to be other than treatment: a provision naming only
#: these does not concern the reads records are shared for here. Any other code (BTG,
#: ERTREAT, COC, ...) may be a kind of treatment, and is read as one.
_NOT_CARE = frozenset({HPAYMT, HRESCH, "HMARKT", "HOPERAT", "HDIRECT", "HLEGAL", "HSYSADMIN",
                       "HTEST", "HACCRED", "HCOMPL", "HQUALIMP", "HRECORD"})


def _for(provision: dict[str, Any], purposes: set[str]) -> bool:
    """Whether a provision applies to any of these purposes of use: one that names none
    applies to all, and so does one naming a purpose that cannot be told apart from them (of
    another code system, or one of v3-ActReason's not known to be other than treatment)."""
    named = provision.get("purpose")
    if not isinstance(named, list) or not named:
        return True
    for c in named:
        if not isinstance(c, dict) or c.get("system") != ACT_REASON:
            return True
        code = c.get("code")
        if code in purposes or (code not in _NOT_CARE and code not in (TREAT, ETREAT)):
            return True
    return False


#: An actor's role that makes it a reader of the records (recipient, primary recipient).
_READERS = frozenset({"IRCP", "PRCP"})


def _outside_of(denial: dict[str, Any]) -> str | None:
    """The province P of a denial of readers outside P, as `consent_resource` writes one:
    every actor a recipient that is "every institution outside P" (an identifier of
    OUTSIDE_PROVINCE_SYSTEM, one P for all), and nothing else limiting it but purposes; None
    for any other denial. An actor named by a province itself (PROVINCE_SYSTEM) is that
    province's institutions: some readers, which the model cannot hold."""
    actors = denial.get("actor")
    if not isinstance(actors, list) or not actors or denial.get("action") or any(
            denial.get(k) for k in _LIMITS if k != "actor"):
        return None
    named = set()
    for a in actors:
        ident = (a.get("reference") or {}).get("identifier") if isinstance(a, dict) else None
        if not (isinstance(ident, dict) and ident.get("system") == OUTSIDE_PROVINCE_SYSTEM
                and isinstance(ident.get("value"), str) and _codes(a.get("role"))
                and _codes(a.get("role")) <= _READERS):
            return None
        named.add(ident["value"])
    return named.pop() if len(named) == 1 else None


def _sharing(consent: dict[str, Any], provision: dict[str, Any]) -> str:
    """What a published privacy Consent lets be read, as the model holds it (one choice a
    person); where the model cannot hold what it says, the reading that shares nothing the
    person may have withheld."""
    if consent.get("status") != "active":
        return NO_CONSENT
    if _codes(consent.get("policyRule")) - {"OPTIN"} or consent.get("policy"):
        return DENY_ALL  # opted out, or under rules the model cannot hold (OPTINR, a policy)
    if consent.get("provision") is not None and not isinstance(consent["provision"], dict):
        return DENY_ALL  # not an object: unread, it must not read as no provision at all
    if not provision:
        return PERMIT
    if provision.get("type") == "deny":  # all denied but what nested permits name
        return DENY_ALL
    provisions = _provisions(provision)
    if any(_limited(p) for p in provisions):
        return DENY_ALL
    denials = [p for p in provisions if p.get("type") == "deny" and _for(p, {TREAT, ETREAT})]
    if not denials:  # none, or only of purposes records are not read for here (research)
        return PERMIT
    provinces = {_outside_of(p) for p in denials}
    if None in provinces or len(provinces) != 1:
        return DENY_ALL
    base = DENY_CROSS_REGION_ALWAYS if any(_for(p, {ETREAT}) for p in denials) \
        else DENY_CROSS_REGION
    return f"{base}@{provinces.pop()}"  # readers outside that province, whoever holds them


def _in_beijing_time(bound: Any) -> str:
    """A period's bound as the query's inf_time compares with it: a date as written (`2026`,
    `2026-12`, `2026-12-10`: compared by year, month or day), a time as Beijing time
    (`yyyy-MM-dd HH:mm:ss`; FHIR gives a time with its zone)."""
    text = str(bound or "")
    if len(text) <= 10:
        return text
    try:  # a leap second (`23:59:60`, valid FHIR) is read as the second before it
        t = datetime.fromisoformat(text.replace(":60", ":59", 1) if text[17:19] == "60"
                                   else text)
    except ValueError:
        return text[:10]
    return (t.astimezone(BEIJING) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")


#: A Consent's `status` that decides nothing yet (`draft`, `proposed`) or was never one
#: (`entered-in-error`): such a Consent leaves the one in force as it was.
UNDECIDED = frozenset({"draft", "proposed", "entered-in-error"})


class SeveralConsents(ValueError):
    """A publish holding more than one privacy Consent of the person's."""


def published_consent(resources: list[dict[str, Any]], certno: str, published_at: str
                      ) -> dict[str, str] | None:
    """What a publish's privacy Consent about the person (scope `patient-privacy`, the person
    named by certno in `patient.identifier`; SeveralConsents if there are several) says of
    sharing, as the repository keeps it: `sharing` (`_sharing`: PERMIT; DENY_CROSS_REGION or
    DENY_CROSS_REGION_ALWAYS where it denies readers outside a province, routine treatment
    or emergencies too; DENY_ALL where it denies more, or what the model cannot tell apart;
    NO_CONSENT where it was withdrawn or refused: `inactive`, `rejected`), its provision's
    period, `from` and `until` ("" if open; a time in Beijing time), and when it was
    `agreed` (its `dateTime`, but no later than `published_at`, the publish's inf_time,
    which stands for it where it has none). None if the
    publish holds no such Consent that decides anything (a research or treatment consent, a
    draft): the one in force stays."""
    mine = [r for r in resources if r.get("resourceType") == "Consent"
            and "patient-privacy" in _codes(r.get("scope"), CONSENT_SCOPE)
            and isinstance(r.get("patient"), dict)
            and isinstance(r["patient"].get("identifier"), dict)
            and r["patient"]["identifier"].get("system") == CERTNO_SYSTEM
            and r["patient"]["identifier"].get("value") == certno
            and r.get("status") not in UNDECIDED]
    if not mine:
        return None
    if len(mine) > 1:  # which holds when? kept as one, the others would be lost
        raise SeveralConsents("one privacy Consent of the person's a publish: this one has "
                              f"{len(mine)}; publish them one at a time")
    consent = mine[0]
    provision = _object(consent.get("provision"))
    sharing = _sharing(consent, provision)
    period = _object(provision.get("period"))
    dated = _in_beijing_time(consent.get("dateTime"))
    # agreed no later than it was published: a Consent dated ahead (2099) would otherwise
    # outrank every denial the person publishes until then (a review found it)
    agreed = min(dated, published_at) if dated and published_at else dated or published_at
    return {"sharing": sharing, "from": _in_beijing_time(period.get("start")),
            "until": _in_beijing_time(period.get("end")), "agreed": agreed}


def sharing_in_force(published: list[dict[str, str]], registered: str | None,
                     at: str) -> str:
    """The person's choice at `at` (the query's inf_time), from the Consents they published,
    in the order they were agreed (`agreed`; as published where it is the same, or unknown in
    a row kept before it was noted): the last that has begun, within its period (by day, or
    by the second where it gives a time; a date of FHIR's coarser precision, `2026-12` or
    `2026`, covers all of it), NO_CONSENT once it ended; one that has not begun yet leaves
    the one before it in force (until 12-05 the register's, whatever the person had
    published before); with none begun, the register's; with neither, NO_CONSENT. Until
    12-05 the order was the publishing's: an old permit uploaded after a newer denial undid
    it."""
    for consent in sorted(reversed(published), key=lambda c: c.get("agreed", ""),
                          reverse=True):
        start, until = consent.get("from", ""), consent.get("until", "")
        if start and at[:len(start)] < start:
            continue
        if until and at[:len(until)] > until:
            return NO_CONSENT
        return consent["sharing"]
    return registered if registered is not None else NO_CONSENT


def consent_resource(certno: str, sharing: str, province: str) -> dict[str, Any]:
    """The person's Consent as FHIR R4: permit for treatment, with a deny provision for
    readers outside the home province when cross-region sharing is denied."""
    provision: dict[str, Any] = {
        "type": "permit",
        "purpose": [{"system": ACT_REASON, "code": TREAT}, {"system": ACT_REASON, "code": ETREAT}]}
    if sharing == DENY_CROSS_REGION:
        provision["provision"] = [{
            "type": "deny", "purpose": [{"system": ACT_REASON, "code": TREAT}],
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]},
                "reference": {"display": f"any institution outside {province}",
                              "identifier": {"system": OUTSIDE_PROVINCE_SYSTEM,
                                             "value": province}}}]}]
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"identifier": {"system": CERTNO_SYSTEM, "value": certno}},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                 "v3-ActCode", "code": "OPTIN"}]},
            "provision": provision}

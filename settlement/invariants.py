"""Invariants that must hold over any set of answers, whatever happened on the way (faults,
duplicates, reversals): DOMAIN.md §3 for every settlement, and per person: a visit settled at
most once at a time, no cap exceeded, each setl_id answered identically every time; over all
the money events (DOMAIN.md §5): the ledger balances, and clearing equals the payments."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from messages.codes import CANCELLATIONS, SETTLEMENTS, Infno
from messages.envelope import answerable_msgid
from messages.identity import shown_id
from settlement.clearing import clear
from settlement.ledger import Ledger, SettlementEvent
from settlement.policy import Category
from settlement.reference import ReferenceData


@dataclass
class InvariantReport:
    checked_settlements: int = 0
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def fail(self, check: str, message: str) -> None:
        if len(self.violations[check]) < 20:
            self.violations[check].append(message)
        else:
            self.violations[check][-1] = "… and more"

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())


CHECKS = ("settlement arithmetic (DOMAIN.md §3)", "one answer per setl_id",
          "a visit settled at most once at a time", "no annual cap exceeded",
          "accumulators equal the sum of the settlements",
          "the ledger balances and owes each hospital its settlements",
          "clearing equals the cross-province payments")


def setlinfo_violations(s: dict[str, Any]) -> list[str]:
    """The §3 invariants of one settlement; empty when it is sound."""
    out = []
    buckets = s["fulamt_ownpay_amt"] + s["overlmt_selfpay"] + s["preselfpay_amt"] + \
        s["inscp_scp_amt"]
    if s["medfee_sumamt"] != buckets:
        out.append("medfee_sumamt != the four buckets")
    if s["medfee_sumamt"] != s["fund_pay_sumamt"] + s["psn_part_amt"]:
        out.append("medfee_sumamt != fund_pay_sumamt + psn_part_amt")
    if s["fund_pay_sumamt"] != s["hifp_pay"]:  # DOMAIN.md §3: no other fund pays
        out.append("fund_pay_sumamt != hifp_pay")
    if s["psn_part_amt"] != s["acct_pay"] + s["psn_cash_pay"]:
        out.append("psn_part_amt != acct_pay + psn_cash_pay")
    if not 0 <= s["hifp_pay"] <= s["inscp_scp_amt"] - s["act_pay_dedc"]:
        out.append("hifp_pay outside [0, inscp_scp_amt - act_pay_dedc]")
    if s["balc"] < 0:
        out.append("balc < 0")
    return out


def accumulators_of(settlements: Iterable[dict[str, Any]], year: str) -> dict[str, int]:
    """What a person's year-to-date accumulators must be, given the settlements in force."""
    acc = {"dedc_11": 0, "fund_11": 0, "fund_21": 0}
    for s in settlements:
        if s["setl_time"][:4] == year:
            acc[f"fund_{s['clr_type']}"] += s["hifp_pay"]
            if s["clr_type"] == Category.OUTPATIENT.value:
                acc["dedc_11"] += s["act_pay_dedc"]
    return acc


def _said(msgid: Any) -> str:
    """A msgid as a failure may name it: as it is if it may be echoed, else not at all (the
    answers checked are whatever a results file holds, a citizen ID put there included)."""
    return msgid if answerable_msgid(msgid) else "(not a msgid)"


#: What a person's checks keep of a settlement in force (`accumulators_of`, the cap, a visit
#: settled twice): not the whole answer, so a long run's check holds little per settlement.
_IN_FORCE_KEYS = ("mdtrt_id", "setl_time", "clr_type", "hifp_pay", "act_pay_dedc")


class PersonCheck:
    """One person's invariants, checked as their exchanges come in the order they were sent
    (`add`), then over the whole period (`finish`): what it holds is the settlements in force
    and a digest of each answered, so results of hours are checked without holding them."""

    def __init__(self, ref: ReferenceData, certno: str) -> None:
        self.ref, self.enrollment = ref, ref.enrollments.get(certno)
        self.in_force: dict[str, dict[str, Any]] = {}  # setl_id -> what _IN_FORCE_KEYS name
        self.seen: dict[str, bytes] = {}  # setl_id -> the digest of its first answer

    def add(self, infno: str, answers: list[dict[str, Any]], report: InvariantReport) -> None:
        ok = [a for a in answers if a.get("infcode") == 0]
        if len({repr(a) for a in answers}) > 1:
            report.fail(CHECKS[1], f"{infno} {_said(answers[0].get('inf_refmsgid'))}: "
                                   f"{len(answers)} answers that differ")
        if not ok:
            return
        out, in_force = ok[0]["output"], self.in_force
        if infno in SETTLEMENTS:
            s = out["setlinfo"]
            report.checked_settlements += 1
            setl_id = shown_id(str(s["setl_id"]))  # masked as an error text masks it
            for v in setlinfo_violations(s):
                report.fail(CHECKS[0], f"setl_id {setl_id}: {v}")
            digest = hashlib.blake2b(orjson.dumps(s, option=orjson.OPT_SORT_KEYS),
                                     digest_size=16).digest()
            if self.seen.setdefault(s["setl_id"], digest) != digest:
                report.fail(CHECKS[1], f"setl_id {setl_id} answered with other amounts")
            if any(x["mdtrt_id"] == s["mdtrt_id"] for x in in_force.values()):
                report.fail(CHECKS[2], f"visit {shown_id(str(s['mdtrt_id']))} settled twice")
            in_force[s["setl_id"]] = {k: s[k] for k in _IN_FORCE_KEYS}
        elif infno in CANCELLATIONS:
            in_force.pop(out["setlinfo"]["init_setl_id"], None)
        elif infno == Infno.REVERSAL and out.get("result") == "undone":
            in_force.pop(out.get("reversed_setl_id", ""), None)
        elif infno == Infno.ACCUMULATORS:
            reported = {c["cum_type_code"]: c["cum"] for c in out["cuminfo"]}
            summed = accumulators_of(in_force.values(), out["year"])
            if any(reported.get(k, 0) != v for k, v in summed.items()):
                report.fail(CHECKS[4], f"5206 {_said(ok[0].get('inf_refmsgid'))} for "
                                       f"{out['year']}: reported {reported}, settlements sum "
                                       f"to {summed}")

    def finish(self, report: InvariantReport) -> None:
        """No annual cap exceeded by the settlements left in force."""
        if (enrollment := self.enrollment) is None:
            return
        paid: dict[tuple[str, str], int] = defaultdict(int)
        caps: dict[tuple[str, str], int] = defaultdict(int)  # the highest in force that year
        for s in self.in_force.values():
            paid[key := (s["setl_time"][:4], s["clr_type"])] += s["hifp_pay"]
            policy = self.ref.policy_on(enrollment.province, s["setl_time"][:10])
            caps[key] = max(caps[key], policy.rule(enrollment.insutype,
                                                   Category(s["clr_type"])).annual_cap)
        for (year, clr_type), total in paid.items():
            if total > (cap := caps[year, clr_type]):
                report.fail(CHECKS[3],
                            f"{year} category {clr_type}: fund paid {total} > cap {cap}")


def check_person(ref: ReferenceData, certno: str,
                 exchanges: Iterable[tuple[str, list[dict[str, Any]]]],
                 report: InvariantReport) -> None:
    """`exchanges`: (infno, answers) of one person's requests in the order they were sent."""
    check = PersonCheck(ref, certno)
    for infno, answers in exchanges:
        check.add(infno, answers, report)
    check.finish(report)


def check_money(events: Iterable[SettlementEvent], report: InvariantReport) -> None:
    """Σ debits = Σ credits; each hospital is owed exactly the fund payments of its
    settlements still in force; each month's clearing pairs sum to that month's net
    cross-province payments, and the provinces' nets to zero."""
    events = list(events)
    ledger = Ledger()
    ledger.post(events)
    if not ledger.balanced:
        report.fail(CHECKS[5], f"debits {ledger.debits} != credits {ledger.credits}")
    undone = {e.setl_id for e in events if e.event != "settle"}
    owed: dict[str, int] = defaultdict(int)
    for e in {(e.setl_id, e.event): e for e in events}.values():
        if e.event == "settle" and e.setl_id not in undone:
            owed[f"hospital:{e.fixmedins_code}"] += e.hifp_pay
    for account in sorted(set(owed) | {a for a in ledger.balances if a.startswith("hospital:")}):
        if -ledger.balances.get(account, 0) != owed.get(account, 0):
            report.fail(CHECKS[5], f"{account} is owed {-ledger.balances.get(account, 0)} "
                                   f"by the ledger, {owed.get(account, 0)} by its settlements")
    cross: dict[str, int] = defaultdict(int)
    for e in {(e.setl_id, e.event): e for e in events}.values():
        if e.cross_province:
            cross[e.time[:7]] += e.signed_amount
    for statement in clear(events):
        if sum(statement.pairs.values()) != cross[statement.month]:
            report.fail(CHECKS[6], f"{statement.month}: pairs sum to "
                                   f"{sum(statement.pairs.values())}, cross-province payments "
                                   f"to {cross[statement.month]}")
        if sum(p.net for p in statement.provinces.values()) != 0:
            report.fail(CHECKS[6], f"{statement.month}: the provinces' nets do not sum to 0")

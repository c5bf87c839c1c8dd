"""Micro-benchmarks of the hot paths, on inputs recorded from a real oracle run (conftest.py).

    pytest benchmarks/ --benchmark-only -q -p no:cacheprovider     # measure
    pytest benchmarks/ --benchmark-disable -q -p no:cacheprovider  # CI: each body runs once

Each benchmark records in `extra_info` what one call covers (`per_call`, in `unit`s) and, when
measured, `per_second` = per_call / mean: sustained throughput, items ÷ total time, garbage
collector pauses included (the conservative figure; the summary printed at the end uses the
same, conftest.py). Where the project sets a target it is recorded as
`target_per_second` (with `target_ratio`), never asserted: these are measurements, not timed
tests. Targets: policy engine ≥ 50,000 settlements/s/core; ingress FHIR validation ≥ 5,000
resources/s/core.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from messages.codec import decode, encode, encode_to_keep
from messages.codes import Infno
from messages.visitlog import VisitSession
from records.audit import audit_entry, audit_event_of
from records.documents import clinical_content, provide_bundle, visit_document
from records.exchange import AUDIT_KEPT, RecordsRow
from records.gateway import ProvincialGateway
from records.validation import InvalidResource, Validator
from settlement.catalogue import FeeTotals
from settlement.insured import InsuredPlatform
from settlement.invariants import setlinfo_violations
from settlement.oracle import Oracle
from settlement.person import PersonRow
from settlement.policy import EMPLOYEE, BenefitContext, Category, InsurancePolicy, compute_benefit
from settlement.treatment import Forward, Reply, TreatmentPlatform
from settlement.treatment_row import TreatmentRow

if TYPE_CHECKING:  # conftest is pytest's to import
    from benchmarks.conftest import Recorded, Submission

POLICY_TARGET = 50_000  # settlements/s/core
VALIDATION_TARGET = 5_000  # resources/s/core
ORACLE_VISITS = 50


def record(benchmark: Any, per_call: int, unit: str, target: float | None = None,
           **extra: Any) -> None:
    """Put the throughput (and the target, if any) in `extra_info`; nothing is asserted."""
    info = benchmark.extra_info
    info.update(extra, per_call=per_call, unit=unit)
    if target is not None:
        info["target_per_second"] = target
    if benchmark.stats is not None:  # None under --benchmark-disable
        per_second = per_call / benchmark.stats.stats.mean
        info["per_second"] = round(per_second, 1)
        if target is not None:
            info["target_ratio"] = round(per_second / target, 2)


def broken_copy(bundle: dict[str, Any]) -> dict[str, Any]:
    """The provide bundle with one bad value: its Patient's birthDate is not a date."""
    broken = copy.deepcopy(bundle)
    patient = broken["entry"][2]["resource"]["entry"][1]["resource"]
    assert patient["resourceType"] == "Patient"
    patient["birthDate"] = "not-a-date"
    return broken


# DOMAIN.md §3's worked example: its classified fees, its person and visit, and the figures the
# domain rules print for it (independent of this code).
WORKED_EXAMPLE = (
    InsurancePolicy("110000"),
    FeeTotals(medfee_sumamt=542_515, fulamt_ownpay_amt=6_000, overlmt_selfpay=50_000,
              preselfpay_amt=2_402, inscp_scp_amt=484_113),
    BenefitContext(insutype=EMPLOYEE, retired=False, category=Category.INPATIENT,
                   hospital_level=3, cross_province=True, filed=True, emergency=False,
                   deductible_paid_ytd=0, fund_paid_ytd=0, balance=100_000, acct_used=True))
WORKED_EXAMPLE_FIGURES = {"act_pay_dedc": 100_000, "hifp_pay": 326_496,
                          "fund_pay_sumamt": 326_496, "psn_part_amt": 216_019,
                          "acct_pay": 100_000, "psn_cash_pay": 116_019, "balc": 0}


def count_resources(resource: dict[str, Any]) -> int:
    """Resources a Validator checks: this one plus, for a Bundle, its entries', recursively."""
    n = 1
    if resource.get("resourceType") == "Bundle":
        n += sum(count_resources(e["resource"]) for e in resource.get("entry", [])
                 if "resource" in e)
    return n


# -- inputs -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def settlement_2207(recorded: Recorded) -> Submission:
    """A typical accepted outpatient settlement: median by the size of the person's row."""
    return recorded.typical(Infno.OUTPATIENT_SETTLE, lambda s: len(s.person_row or b""))


@pytest.fixture(scope="module")
def upload_2204(recorded: Recorded) -> Submission:
    """A typical accepted outpatient fee upload: median by item count, then row size."""
    return recorded.typical(Infno.FEE_UPLOAD, lambda s: (
        len(s.request["input"]["feedetail"]), len(s.treatment_row or b"")))


@pytest.fixture(scope="module")
def publish_7001(recorded: Recorded) -> Submission:
    """A typical accepted ITI-65 publish: median by the number of resources in its bundle."""
    return recorded.typical(Infno.EHR_PUBLISH,
                            lambda s: count_resources(s.request["input"]["resource"]))


# -- 1. policy engine -------------------------------------------------------------------------
def test_policy_engine(benchmark: Any, recorded: Recorded) -> None:
    """`compute_benefit` over every settlement and pre-settlement of the recorded run, as the
    insured side called it (same policy, FeeTotals and BenefitContext), and DOMAIN.md §3's
    worked example.
    per_second = settlements/s. Target: ≥ 50,000 settlements/s/core."""
    inputs = [(p, f, c) for p, f, c, _ in recorded.benefits] + [WORKED_EXAMPLE]
    expected = [b for *_, b in recorded.benefits]

    def settle_all() -> list[Any]:
        return [compute_benefit(p, f, c) for p, f, c in inputs]

    result = benchmark(settle_all)
    assert len(inputs) >= 100
    # correctness: the worked example gives the figures DOMAIN.md §3 prints, and every result
    # keeps the §3 invariants (the buckets add up, 0 ≤ hifp_pay ≤ inscp − deductible, balc ≥ 0)
    worked = dataclasses.asdict(result[-1])
    assert {k: worked[k] for k in WORKED_EXAMPLE_FIGURES} == WORKED_EXAMPLE_FIGURES
    assert [v for b in result for v in setlinfo_violations(dataclasses.asdict(b))] == []
    # determinism only: the same calls give what they gave while the run was recorded
    assert result[:-1] == expected
    record(benchmark, len(inputs), "settlements", POLICY_TARGET)


# -- 2. fee classification --------------------------------------------------------------------
def test_catalogue_classify(benchmark: Any, recorded: Recorded) -> None:
    """`Catalogue.classify` of every fee item uploaded in the recorded run (2204 and 2301),
    each with its hospital's province catalogue. per_second = items/s. No project target."""
    items = recorded.fee_items()

    def classify_all() -> list[Any]:
        return [cat.classify(code, cnt, pric) for cat, code, cnt, pric in items]

    splits = benchmark(classify_all)
    assert len(splits) == len(items) >= 500
    for (_, _, cnt, pric), s in zip(items, splits, strict=True):
        assert s.amount == cnt * pric == (s.fulamt_ownpay_amt + s.overlmt_selfpay
                                          + s.preselfpay_amt + s.inscp_scp_amt)
    record(benchmark, len(items), "items")


# -- 3. message codec -------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["encode", "decode"])
@pytest.mark.parametrize("message", ["request", "answer"])
def test_codec(benchmark: Any, settlement_2207: Submission, message: str, op: str) -> None:
    """`messages.codec.encode` / `decode` of a typical 2207 request and of its answer.
    per_second = messages/s. No project target."""
    obj = settlement_2207.request if message == "request" else settlement_2207.answer
    assert obj is not None
    raw = encode(obj)
    if op == "encode":
        out = benchmark(encode, obj)
        assert decode(out) == obj  # round trip
        assert out == raw  # determinism only: the same bytes as the call above
    else:
        out = benchmark(decode, raw)
        assert out == obj
    record(benchmark, 1, "messages", bytes=len(raw))


# -- 4. per-person row update paths -----------------------------------------------------------
def test_treatment_fee_upload(benchmark: Any, recorded: Recorded,
                              upload_2204: Submission) -> None:
    """The treatment side's whole handling of one 2204 fee upload, row round trip included:
    decode the person's TreatmentRow, `TreatmentPlatform.handle_request(certno, raw, row)`
    (envelope and input validation, catalogue classification), `encode_to_keep` the changed
    row. per_second = requests/s. No project target."""
    platform = TreatmentPlatform(recorded.world.ref)
    certno, raw, row_bytes = upload_2204.certno, encode(upload_2204.request), \
        upload_2204.treatment_row
    assert row_bytes is not None  # the visit was registered (2201) before

    def handle() -> tuple[Any, bytes]:
        outcome, row = platform.handle_request(
            certno, raw, TreatmentRow.from_dict(decode(row_bytes)))
        assert row is not None
        return outcome, encode_to_keep(row.to_dict())

    outcome, kept = benchmark(handle)
    assert isinstance(outcome, Reply) and outcome.answer == upload_2204.answer
    items = len(upload_2204.request["input"]["feedetail"])
    fees = {sn for v in decode(kept)["visits"].values() for sn in v["fees"]}
    assert {it["feedetl_sn"] for it in upload_2204.request["input"]["feedetail"]} <= fees
    record(benchmark, 1, "requests", items=items, row_bytes_in=len(row_bytes),
           row_bytes_out=len(kept))


def test_insured_settlement(benchmark: Any, recorded: Recorded,
                            settlement_2207: Submission) -> None:
    """The insured side's whole handling of one 2207 settlement, row round trip included:
    decode the PersonRow, `InsuredPlatform.handle(certno, row, req, ctx)` (policy engine and
    accumulators), `encode_to_keep` the changed row. req and ctx are what the treatment side
    forwarded. per_second = settlements/s. No project target of its own (the policy engine's
    50,000/s applies to `compute_benefit` alone, see test_policy_engine)."""
    ref = recorded.world.ref
    sub = settlement_2207
    treatment_row = TreatmentRow.from_dict(decode(sub.treatment_row)) \
        if sub.treatment_row is not None else None
    forward, _ = TreatmentPlatform(ref).handle_request(
        sub.certno, encode(sub.request), treatment_row)
    assert isinstance(forward, Forward)
    insured = InsuredPlatform(ref)
    certno, req, ctx, row_bytes = sub.certno, forward.req, forward.ctx, sub.person_row

    def handle() -> tuple[dict[str, Any], bytes]:
        row = PersonRow.from_dict(decode(row_bytes)) if row_bytes is not None else None
        answer, changed = insured.handle(certno, row, req, ctx)
        assert changed is not None
        return answer, encode_to_keep(changed.to_dict())

    answer, kept = benchmark(handle)
    assert answer["infcode"] == 0
    setl = answer["output"]["setlinfo"]
    assert setlinfo_violations(setl) == []  # DOMAIN.md §3's invariants
    # the row moved by exactly this settlement: in force, account and accumulator updated
    before = PersonRow.from_dict(decode(row_bytes)) if row_bytes is not None else None
    after = PersonRow.from_dict(decode(kept))
    assert after.settlements[setl["setl_id"]]["status"] == "settled"
    year, fund = setl["setl_time"][:4], f"fund_{setl['clr_type']}"
    assert after.accumulator(year, fund) - (before.accumulator(year, fund) if before else 0) \
        == setl["hifp_pay"]
    assert after.balance == setl["balc"]
    if before is not None:
        assert before.balance - after.balance == setl["acct_pay"]
    assert answer == sub.answer  # determinism only: the answer the recorded run gave
    record(benchmark, 1, "settlements", row_bytes_in=len(row_bytes or b""),
           row_bytes_out=len(kept))


GROWN_DOCUMENTS = 50  # a chronic person's year of visits


@pytest.mark.parametrize("form", ["entries", "whole events"])
def test_records_row_access(benchmark: Any, publish_7001: Submission, form: str) -> None:
    """What every health-record access pays for the person's row, on a grown one (50
    documents published by the gateway, the latest AUDIT_KEPT accesses): decode the
    RecordsRow, record one access, `encode_to_keep` it. `entries` is how the row keeps the
    accesses (`audit_entry`); `whole events` is how rows kept them before 2026-12-07, the
    AuditEvents themselves, for before and after in one run. per_second = accesses/s. No
    project target."""
    sub = publish_7001
    gateway, row = ProvincialGateway(), RecordsRow()
    for n in range(GROWN_DOCUMENTS):
        req = {**sub.request, "msgid": f"{sub.request['msgid']}-{n}"}
        _, grown = gateway.handle(sub.certno, req, {}, row)
        assert grown is not None
        row = grown

    def lookup(n: int) -> dict[str, Any]:
        return audit_entry(msgid=f"H1101000000120261210{n:010d}", operation="lab-lookup",
                           certno=sub.certno, requester="H11010000001",
                           requester_province="110000", source_province="310000",
                           purpose="TREAT", outcome="0",
                           description="cross-region treatment, permitted by the person's "
                                       "consent", recorded="2026-12-10 10:00:00")

    whole = form == "whole events"
    for n in range(AUDIT_KEPT):
        row.record_access(audit_event_of(lookup(n)) if whole else lookup(n))
    raw = encode_to_keep(row.to_dict())
    access = audit_event_of(lookup(AUDIT_KEPT)) if whole else lookup(AUDIT_KEPT)

    def handle() -> bytes:
        kept = RecordsRow.from_dict(decode(raw))
        kept.record_access(access)
        return encode_to_keep(kept.to_dict())

    after = RecordsRow.from_dict(decode(benchmark(handle)))
    assert (len(after.docs), after.audited) == (GROWN_DOCUMENTS, AUDIT_KEPT + 1)
    # either form, the same AuditEvents
    assert after.audit_events() == [audit_event_of(lookup(n)) for n in range(1, AUDIT_KEPT + 1)]
    record(benchmark, 1, "accesses", row_bytes=len(raw))


# -- 5. FHIR document build -------------------------------------------------------------------
def test_fhir_document_build(benchmark: Any, recorded: Recorded,
                             publish_7001: Submission) -> None:
    """`visit_document` + `provide_bundle` for one visit, with the arguments
    `VisitSession._ehr_input` gives them (clinical content included). per_second =
    documents/s. No project target."""
    req = publish_7001.request
    msgid, inf_time = req["msgid"], req["inf_time"]
    expected = req["input"]["resource"]
    v = recorded.visit_of(msgid)
    document = expected["entry"][2]["resource"]
    performed = [e["resource"]["code"]["coding"][0]["code"] for e in document["entry"]
                 if e["resource"]["resourceType"] == "Observation"]

    def build() -> dict[str, Any]:
        clinical = clinical_content(v.visit_no, v.certno, v.kind == "inpatient")
        doc = visit_document(
            msgid=msgid, certno=v.certno, gender="1" if int(v.certno[16]) % 2 else "2",
            birth_date=f"{v.certno[6:10]}-{v.certno[10:12]}-{v.certno[12:14]}",
            fixmedins_code=v.fixmedins_code, hospital_name=f"医院 {v.fixmedins_code}",
            admdvs=v.mdtrtarea_admvs, inpatient=v.kind == "inpatient", begntime=v.begntime,
            endtime=inf_time, visit_no=v.visit_no, clinical=clinical, performed=performed,
            medications=[(it.code, it.cnt) for it in v.items if it.code.startswith("XD")])
        return provide_bundle(doc, v.certno, v.fixmedins_code, msgid, inf_time)

    bundle = benchmark(build)
    Validator().validate(bundle)  # valid FHIR R4B, checked by the library's models
    built = bundle["entry"][2]["resource"]  # the document inside the provide bundle
    assert (built["type"], built["entry"][0]["resource"]["resourceType"]) == \
        ("document", "Composition")
    assert bundle == expected  # determinism only: identical to what the hospital published
    record(benchmark, 1, "documents", resources=count_resources(bundle))


# -- 6. ingress FHIR validation ---------------------------------------------------------------
def test_fhir_validation_cold(benchmark: Any, publish_7001: Submission) -> None:
    """`Validator().validate(bundle)` of a typical ITI-65 provide bundle never seen before: a
    new Validator each round, so its cache hides nothing (every resource goes through its
    fhir.resources R4B model). per_second = resources/s, counting every resource checked
    (the two Bundles themselves and all their entries). Target: ≥ 5,000 resources/s/core."""
    bundle = publish_7001.request["input"]["resource"]
    resources = count_resources(bundle)

    def validate(validator: Validator) -> None:
        validator.validate(bundle)

    benchmark.pedantic(validate, setup=lambda: ((Validator(),), {}),
                       rounds=20, warmup_rounds=1)
    # …and it does validate: the same bundle with one bad value is refused
    with pytest.raises(InvalidResource, match="birthDate"):
        Validator().validate(broken_copy(bundle))
    record(benchmark, resources, "resources", VALIDATION_TARGET)


def test_fhir_validation_warm(benchmark: Any, publish_7001: Submission) -> None:
    """The same `validate(bundle)` on a Validator that has already accepted it: every
    resource is a cache hit (canonical orjson dump + lookup), for contrast with the cold
    case. per_second = resources/s. No target of its own: issue #8's 5,000 resources/s/core
    is the cold case's, which this does not measure."""
    bundle = publish_7001.request["input"]["resource"]
    validator = Validator()
    validator.validate(bundle)

    benchmark(validator.validate, bundle)
    # the cache spares only what it has seen byte for byte: a changed copy is still refused
    with pytest.raises(InvalidResource, match="birthDate"):
        validator.validate(broken_copy(bundle))
    record(benchmark, count_resources(bundle), "resources")


# -- 7. oracle end to end ---------------------------------------------------------------------
def test_oracle_end_to_end(benchmark: Any, recorded: Recorded) -> None:
    """`Oracle.settle_log` of the first 50 visits of the recorded run (every step: 1101,
    registrations, fee uploads, settlements, health records…) on a fresh Oracle each round.
    per_second = visits/s. No project target."""
    visits = recorded.visits[:ORACLE_VISITS]
    expected = [s.settlement for s in recorded.sessions[:ORACLE_VISITS]]

    def settle(oracle: Oracle) -> list[VisitSession]:
        return list(oracle.settle_log(visits))

    sessions = benchmark.pedantic(settle, setup=lambda: ((Oracle(recorded.world.ref),), {}),
                                  rounds=5, warmup_rounds=1)
    settled = [s.settlement for s in sessions if s.settlement is not None]
    assert len(settled) > ORACLE_VISITS // 2
    assert [v for s in settled for v in setlinfo_violations(s)] == []  # DOMAIN.md §3
    # determinism only: a fresh oracle settles the visits as the recorded run did
    assert [s.settlement for s in sessions] == expected
    record(benchmark, ORACLE_VISITS, "visits", requests=sum(s.sends for s in sessions))

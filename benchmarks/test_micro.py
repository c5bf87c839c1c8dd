"""Micro-benchmarks of the hot paths, on inputs recorded from a real oracle run (conftest.py).

    pytest benchmarks/ --benchmark-only -q -p no:cacheprovider     # measure
    pytest benchmarks/ --benchmark-disable -q -p no:cacheprovider  # CI: each body runs once

Each benchmark records in `extra_info` what one call covers (`per_call`, in `unit`s) and, when
measured, `per_second` = per_call / mean. Where the project sets a target it is recorded as
`target_per_second` (with `target_ratio`), never asserted: these are measurements, not timed
tests. Targets: policy engine ≥ 50,000 settlements/s/core; ingress FHIR validation ≥ 5,000
resources/s/core.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

from messages.codec import decode, encode, encode_to_keep
from messages.codes import Infno
from messages.visitlog import VisitSession
from records.documents import clinical_content, provide_bundle, visit_document
from records.validation import InvalidResource, Validator
from settlement.insured import InsuredPlatform
from settlement.oracle import Oracle
from settlement.person import PersonRow
from settlement.policy import compute_benefit
from settlement.treatment import Forward, Reply, TreatmentPlatform, TreatmentRow

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
    """`compute_benefit` over every (pre-)settlement of the recorded run, as the insured side
    called it (same policy, FeeTotals and BenefitContext). per_second = settlements/s.
    Target: ≥ 50,000 settlements/s/core."""
    inputs = [(p, f, c) for p, f, c, _ in recorded.benefits]
    expected = [b for *_, b in recorded.benefits]

    def settle_all() -> list[Any]:
        return [compute_benefit(p, f, c) for p, f, c in inputs]

    result = benchmark(settle_all)
    assert len(inputs) >= 100
    assert result == expected
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
        assert out == raw
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
    assert answer == sub.answer and answer["infcode"] == 0
    setl_id = answer["output"]["setlinfo"]["setl_id"]
    assert decode(kept)["settlements"][setl_id]["status"] == "settled"
    record(benchmark, 1, "settlements", row_bytes_in=len(row_bytes or b""),
           row_bytes_out=len(kept))


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
    assert bundle == expected  # byte-identical to what the hospital published
    record(benchmark, 1, "documents", resources=count_resources(bundle))


# -- 6. ingress FHIR validation ---------------------------------------------------------------
def test_fhir_validation_cold(benchmark: Any, publish_7001: Submission) -> None:
    """`Validator().validate(bundle)` of a typical ITI-65 provide bundle never seen before: a
    new Validator each round, so its cache hides nothing (every resource goes through its
    fhir.resources R4B model). per_second = resources/s, counting every resource checked
    (the two Bundles themselves and all their entries). Target: ≥ 5,000 resources/s/core."""
    bundle = publish_7001.request["input"]["resource"]
    resources = count_resources(bundle)

    def validate(validator: Validator) -> Validator:
        validator.validate(bundle)
        return validator

    validator = benchmark.pedantic(validate, setup=lambda: ((Validator(),), {}),
                                   rounds=20, warmup_rounds=1)
    assert isinstance(validator, Validator)
    # …and it does validate: the same bundle with one bad value is refused
    broken = copy.deepcopy(bundle)
    patient = broken["entry"][2]["resource"]["entry"][1]["resource"]
    assert patient["resourceType"] == "Patient"
    patient["birthDate"] = "not-a-date"
    with pytest.raises(InvalidResource, match="birthDate"):
        Validator().validate(broken)
    record(benchmark, resources, "resources", VALIDATION_TARGET)


def test_fhir_validation_warm(benchmark: Any, publish_7001: Submission) -> None:
    """The same `validate(bundle)` on a Validator that has already accepted it: every
    resource is a cache hit (canonical orjson dump + lookup), for contrast with the cold
    case. per_second = resources/s. Target (for the cold case): ≥ 5,000 resources/s/core."""
    bundle = publish_7001.request["input"]["resource"]
    validator = Validator()
    validator.validate(bundle)

    def validate() -> bool:
        validator.validate(bundle)
        return True

    assert benchmark(validate) is True
    record(benchmark, count_resources(bundle), "resources", VALIDATION_TARGET)


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
    assert [s.settlement for s in sessions] == expected
    assert sum(s is not None for s in expected) > ORACLE_VISITS // 2
    record(benchmark, ORACLE_VISITS, "visits", requests=sum(s.sends for s in sessions))

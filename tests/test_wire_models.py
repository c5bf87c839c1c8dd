"""Every answer the platform gives matches the published output models, and every request the
hospitals send matches the input models (the wire contract in messages/)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from messages.codes import EHR, RECONCILIATIONS, ErrorCode, Infno
from messages.envelope import Answer, Request
from messages.transactions import INPUT_MODELS, OUTPUT_MODELS, SetlInfo
from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world


@pytest.fixture(scope="module")
def exchanges() -> list[tuple[dict, dict]]:
    world = build_world(WorldSpec(seed=5, persons=300))
    oracle = Oracle(world.ref)
    pairs = []
    # 500 visits: enough for every transaction of the visit plans to occur.
    for visit in generate_visits(world, VisitSpec(visits=500, cross_share=0.4)):
        session = VisitSession(visit)
        while requests := session.advance():
            for req in requests:
                answer = oracle.submit(visit.certno, req)
                assert answer is not None
                pairs.append((req, answer))
                session.on_answer(answer)
    return pairs


def test_every_request_matches_the_envelope_and_its_input_model(exchanges):
    for req, _ in exchanges:
        Request.model_validate(req)
        INPUT_MODELS[req["infno"]].model_validate(req["input"])


def test_every_answer_matches_the_answer_and_its_output_model(exchanges):
    # 9001 and 3201/3202 belong to a hospital's day, not to a visit
    assert {req["infno"] for req, _ in exchanges} == \
        set(OUTPUT_MODELS) - {Infno.SIGN_IN} - RECONCILIATIONS
    for req, answer in exchanges:
        Answer.model_validate(answer)
        fhir = req["infno"] in EHR and "resourceType" in answer["output"]
        if fhir:  # FHIR out: valid R4B, an OperationOutcome when refused
            get_fhir_model_class(answer["output"]["resourceType"]).model_validate(
                answer["output"])
        if answer["infcode"] == 0:
            OUTPUT_MODELS[req["infno"]].model_validate(answer["output"])
        else:  # a refusal expected by the plan (or of a suspended person): a stable code
            assert answer["infcode"] == -1
            assert answer["err_code"] in set(ErrorCode)
            assert answer["err_msg"]
            assert answer["output"]["resourceType"] == "OperationOutcome" if fhir else \
                answer["output"] == {}


def test_a_settlement_with_a_float_amount_is_not_a_valid_setlinfo(exchanges):
    setlinfo = next(a["output"]["setlinfo"] for r, a in exchanges if r["infno"] == "2207")
    SetlInfo.model_validate(setlinfo)
    with pytest.raises(ValidationError):
        SetlInfo.model_validate({**setlinfo, "hifp_pay": 12.5})


@pytest.mark.parametrize("setl_id", ["张三", "110101199003078515 ", "x" * 31, ""])
def test_a_3202_lists_setl_ids_as_identifiers_not_free_text(setl_id):
    """Its answer echoes the ids the platform lacks: a name or a long text is refused."""
    period = {"stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-31"}
    INPUT_MODELS["3202"].model_validate({**period, "setl_ids": ["S1", "2026.03-A_1"]})
    with pytest.raises(ValidationError):
        INPUT_MODELS["3202"].model_validate({**period, "setl_ids": ["S1", setl_id]})

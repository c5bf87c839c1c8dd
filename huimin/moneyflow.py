"""Money events out of a run's files, for `huimin clearing`: the answers in results.jsonl,
joined with the visit log for each visit's hospital."""

from __future__ import annotations

from typing import Any

from messages.visitlog import Visit, VisitSession, parse_step
from settlement.ledger import SettlementEvent, events_from_answers


def events_of_visit(visit: Visit, answers: dict[str, list[dict[str, Any]]]
                    ) -> list[SettlementEvent]:
    """The money events of one visit's answers (a result record's, by msgid)."""
    session = VisitSession(visit)
    return events_from_answers(visit.fixmedins_code, [
        (session.msgid_at(i), parse_step(step)[0], answers.get(session.msgid_at(i), []))
        for i, step in enumerate(visit.steps)])

"""Money events out of a run's files, for `huimin clearing`: the answers in results.jsonl,
joined with the visit log for each visit's hospital."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from huimin.logfiles import read_records
from messages.visitlog import Visit, VisitSession, parse_step
from settlement.ledger import SettlementEvent, events_from_answers


def events_from_results(visits: Iterator[Visit], results: Path) -> list[SettlementEvent]:
    answers_by_visit = {r["visit_no"]: r["answers"] for r in read_records(results)}
    events: list[SettlementEvent] = []
    for visit in visits:
        answers = answers_by_visit.get(visit.visit_no, {})
        session = VisitSession(visit)
        exchanges = [(session.msgid_at(i), parse_step(step)[0],
                      answers.get(session.msgid_at(i), []))
                     for i, step in enumerate(visit.steps)]
        events += events_from_answers(visit.fixmedins_code, exchanges)
    return events

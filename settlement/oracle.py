"""The oracle: settles a visit log sequentially, offline, through the very same role handlers
the streamed platform uses, but with no broker, no partitions and no concurrency. Any
difference between its answers and the streamed ones is a stream-processing fault."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from messages.codec import encode
from messages.visitlog import Visit, VisitSession
from settlement.insured import InsuredPlatform
from settlement.national import BackToTreatment, NationalPlatform
from settlement.person import PersonRow
from settlement.reference import ReferenceData
from settlement.treatment import DeadLetter, Forward, Reply, TreatmentPlatform, TreatmentRow


class Oracle:
    def __init__(self, ref: ReferenceData) -> None:
        self.treatment = TreatmentPlatform(ref)
        self.national = NationalPlatform(ref)
        self.insured = InsuredPlatform(ref)
        self.treatment_rows: dict[str, TreatmentRow] = {}
        self.person_rows: dict[str, PersonRow] = {}

    def submit(self, certno: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """Answer one hospital request as the platform would; None if it is dead-lettered."""
        outcome, row = self.treatment.handle_request(
            certno, encode(request), self.treatment_rows.get(certno))
        if row is not None:
            self.treatment_rows[certno] = row
        if isinstance(outcome, DeadLetter):
            return None
        if isinstance(outcome, Reply):
            return outcome.answer
        assert isinstance(outcome, Forward)
        req, ctx = outcome.req, outcome.ctx
        routed = self.national.route(certno, req, ctx) if outcome.to == "national" else None
        if isinstance(routed, BackToTreatment):  # refused by the national platform
            answer = routed.answer
        else:
            answer, prow = self.insured.handle(certno, self.person_rows.get(certno), req, ctx)
            if prow is not None:
                self.person_rows[certno] = prow
        # Every answer passes the treatment side on its way back, as in the streamed platform.
        trow = self.treatment.handle_answer(answer, ctx, self.treatment_rows.get(certno))
        if trow is not None:
            self.treatment_rows[certno] = trow
        return answer

    def run_visit(self, visit: Visit) -> VisitSession:
        """Carry out one visit's plan, answering each request in the order it is sent."""
        session = VisitSession(visit)
        while requests := session.advance():
            for req in requests:
                answer = self.submit(visit.certno, req)
                if answer is not None:
                    session.on_answer(answer)
        return session

    def settle_log(self, visits: Iterable[Visit]) -> Iterator[VisitSession]:
        for visit in visits:
            yield self.run_visit(visit)

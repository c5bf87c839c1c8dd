"""The oracle: settles a visit log sequentially, offline, through the very same role handlers
the streamed platform uses, but with no broker, no partitions and no concurrency. Any
difference between its answers and the streamed ones is a stream-processing fault."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from messages.codec import decode, encode, encode_to_keep
from messages.visitlog import Visit, VisitSession
from records.exchange import EhrAnswer, IndexRow, RecordsRow
from records.gateway import ProvincialGateway
from records.national_index import NationalIndex
from records.repositories import SourceRepositories
from settlement.insured import InsuredPlatform
from settlement.ledger import SettlementEvent
from settlement.national import BackToTreatment, NationalPlatform
from settlement.person import PersonRow
from settlement.reconciliation import answer_reconciliation
from settlement.reference import ReferenceData
from settlement.retention import cutoff
from settlement.treatment import DeadLetter, Forward, Reply, TreatmentPlatform
from settlement.treatment_row import TreatmentRow


class Oracle:
    """Rows are kept encoded, as the platform's tables keep them, and forgotten past the
    operating window (settlement/retention.py) once nobody has touched them since: memory
    follows the window's activity, not the length of the log."""

    def __init__(self, ref: ReferenceData) -> None:
        self.treatment = TreatmentPlatform(ref)
        self.national = NationalPlatform(ref)
        self.insured = InsuredPlatform(ref)
        self._treatment_rows: dict[str, bytes] = {}
        self._person_rows: dict[str, bytes] = {}
        self._last_touched: dict[str, set[str]] = {}  # day (yyyyMMdd) -> certnos
        self.money_events: dict[tuple[str, str], SettlementEvent] = {}  # as national clearing
        self.recon_answers: dict[str, dict[str, Any]] = {}  # 3201/3202/3203 by msgid
        #: the visit that sent each msgid, by the msgid's day: a msgid is shared only at its
        #: own second, and visits come in order of their start, so a day before the current
        #: visit's is forgotten
        self._senders: dict[str, dict[str, int]] = {}
        self.ehr = EhrOracle(ref)

    @property
    def treatment_rows(self) -> dict[str, TreatmentRow]:
        return {c: TreatmentRow.from_dict(decode(b)) for c, b in self._treatment_rows.items()}

    @property
    def person_rows(self) -> dict[str, PersonRow]:
        return {c: PersonRow.from_dict(decode(b)) for c, b in self._person_rows.items()}

    def _trow(self, certno: str) -> TreatmentRow | None:
        raw = self._treatment_rows.get(certno)
        return TreatmentRow.from_dict(decode(raw)) if raw is not None else None

    def _prow(self, certno: str) -> PersonRow | None:
        raw = self._person_rows.get(certno)
        return PersonRow.from_dict(decode(raw)) if raw is not None else None

    def forget_before(self, day: str) -> None:
        """Prune the rows last touched before `day` (yyyyMMdd) as of that day, every
        hospital's part: the oracle's memory, not a difference from the platform, which
        keeps a hospital's part until that hospital's next request for the person. Visits
        come in order of their start, so that request is dated after `day` and a week, and
        forgets all of its part from before `day` before it is decided; and no hospital's
        request reads another's part (a 2601 names its own msgids, a visit is changed by the
        hospital that registered it)."""
        before = day + "000000"
        for stale in sorted(d for d in self._last_touched if d < day):
            for certno in self._last_touched.pop(stale):
                if (t := self._trow(certno)) is not None:
                    t.forget_before(before)
                    self._treatment_rows[certno] = encode_to_keep(t.to_dict())
                if (p := self._prow(certno)) is not None:
                    p.forget_before(before)
                    self._person_rows[certno] = encode_to_keep(p.to_dict())

    def submit(self, certno: str, request: dict[str, Any]) -> dict[str, Any] | None:
        """Answer one hospital request as the platform would; None if it is dead-lettered."""
        day = str(request.get("inf_time", ""))[:10].replace("-", "")
        self._last_touched.setdefault(day, set()).add(certno)
        outcome, row = self.treatment.handle_request(
            certno, encode(request), self._trow(certno))
        if row is not None:
            self._treatment_rows[certno] = encode_to_keep(row.to_dict())
        if isinstance(outcome, DeadLetter):
            return None
        if isinstance(outcome, Reply):
            return outcome.answer
        assert isinstance(outcome, Forward)
        req, ctx = outcome.req, outcome.ctx
        if outcome.to == "reconciliation":  # a duplicate gets the original answer
            if (kept := self.recon_answers.get(req["msgid"])) is None:
                kept = self.recon_answers[req["msgid"]] = answer_reconciliation(
                    req, self.money_events.values())
            return kept
        if outcome.to == "ehr":
            return self.ehr.submit(certno, req, ctx)
        routed = self.national.route(certno, req, ctx) if outcome.to == "national" else None
        if isinstance(routed, BackToTreatment):  # refused by the national platform
            answer = routed.answer
        else:
            prow_in = self._prow(certno)
            answer, prow = self.insured.handle(certno, prow_in, req, ctx)
            if prow is not None:
                self._person_rows[certno] = encode_to_keep(prow.to_dict())
            event = self.insured.money_event(req, answer, prow or prow_in,
                                             ctx["fixmedins_code"])
            if event is not None:
                self.money_events.setdefault((event.setl_id, event.event), event)
        # Every answer passes the treatment side on its way back, as in the streamed platform.
        trow = self.treatment.handle_answer(answer, ctx, self._trow(certno))
        if trow is not None:
            self._treatment_rows[certno] = encode_to_keep(trow.to_dict())
        return answer

    def run_visit(self, visit: Visit) -> VisitSession:
        """Carry out one visit's plan, answering each request in the order it is sent."""
        self.forget_before(cutoff(visit.begntime)[:8])
        session = VisitSession(visit)
        today = visit.begntime[:10].replace("-", "")
        for stale in [d for d in self._senders if d < today]:
            del self._senders[stale]
        while requests := session.advance():
            for n, req in enumerate(requests):
                if self._sender(req["msgid"], visit.visit_no) != visit.visit_no:
                    # another visit's msgid (a hand-made log): ended there, as the hospitals
                    # end it (simulators/visit_run.py), not answered as that visit's
                    session.end_unsent({r["msgid"] for r in requests[n:] if self._sender(
                        r["msgid"], None) != visit.visit_no}, req["msgid"])
                    break
                answer = self.submit(visit.certno, req)
                if answer is not None:
                    session.on_answer(answer)
        return session

    def _sender(self, msgid: str, visit_no: int | None) -> int | None:
        """The visit that sent `msgid` first; `visit_no` is noted as it if none did."""
        seen = self._senders.setdefault(msgid[12:20], {})
        return seen.setdefault(msgid, visit_no) if visit_no is not None else seen.get(msgid)

    def settle_log(self, visits: Iterable[Visit]) -> Iterator[VisitSession]:
        for visit in visits:
            yield self.run_visit(visit)


class EhrOracle:
    """The health-record exchange's three roles (records/exchange.py), one after another."""

    def __init__(self, ref: ReferenceData) -> None:
        self.gateway = ProvincialGateway()
        self.index = NationalIndex()
        self.sources = SourceRepositories(ref)
        self.records: dict[str, bytes] = {}
        self.index_rows: dict[str, bytes] = {}

    def record(self, certno: str) -> RecordsRow:
        raw = self.records.get(certno)
        return RecordsRow.from_dict(decode(raw) if raw else None)

    def submit(self, certno: str, req: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        steps, row = self.gateway.handle(certno, req, ctx, self.record(certno))
        if row is not None:
            self.records[certno] = encode_to_keep(row.to_dict())
        answer: dict[str, Any] | None = None
        for step in steps:
            if isinstance(step, EhrAnswer):
                answer = step.answer
                continue
            raw = self.index_rows.get(certno)
            result, irow = self.index.handle(step.msg, IndexRow.from_dict(
                decode(raw) if raw else None))
            if irow is not None:
                self.index_rows[certno] = encode_to_keep(irow.to_dict())
            if isinstance(result, EhrAnswer):
                answer = result.answer
            elif result is not None:
                answer, rrow = self.sources.handle(certno, result, self.record(certno))
                assert answer is not None  # one after another: the row holds every publish
                self.records[certno] = encode_to_keep(rrow.to_dict())
        assert answer is not None
        return answer

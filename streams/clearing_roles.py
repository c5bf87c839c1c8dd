"""National clearing's roles (settlement/clearing.py, reconciliation.py): every money event
kept once in one table, reconciliations (3201/3202/3203) answered from it, and the clearing
statements and ledger served as JSON."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any

from faust.web import Request, Response, View

from messages import topics
from messages.codec import decode, encode_to_keep
from messages.platform import NotPlatformMessage, unwrap
from messages.trace import NAT_IN
from settlement.clearing import ClearingPolicy, clear
from settlement.ledger import Ledger, SettlementEvent
from settlement.reconciliation import ClearingIndex, answer_reconciliation, period_of
from streams import metrics
from streams.hop_stamps import stamp
from streams.role import RoleRunner, Send, stored
from streams.wiring import Wiring

#: How often a worker looks whether a rebalance left its clearing positions' gauge to build
#: anew from the table (`positions`).
CATCH_UP_EVERY_S = 5.0


class ClearingRoles:
    def __init__(self, run: RoleRunner, wiring: Wiring,
                 policy: ClearingPolicy | None = None) -> None:
        self.run, self.w = run, wiring
        self.policy = policy or ClearingPolicy()  # the prepayments' parameters
        self.index = ClearingIndex()  # event ids by hospital and day
        # the table was (or may have been) recovered since the index was built from it
        self.index_stale = True
        # ... since the net positions' gauge was
        self.gauge_stale = True

    def register_clearing(self) -> None:
        app = self.run.app
        self.run.role(self.w.money_events, "national_clearing", self.on_money_event)
        app.timer(interval=CATCH_UP_EVERY_S)(self.positions)

        @app.page("/clearing/")
        async def clearing_view(web: View, request: Request) -> Response:
            """The national clearing statements of every month so far (JSON)."""
            return web.json(self.statements()) if self.serves_table() else self.elsewhere(web)

        @app.page("/ledger/")
        async def ledger_view(web: View, request: Request) -> Response:
            """The national ledger's trial balance, posted from the same events (JSON)."""
            return (web.json(self.trial_balance()) if self.serves_table()
                    else self.elsewhere(web))

    def serves_table(self) -> bool:
        """Whether this worker holds the clearing table's one partition, outside a rebalance.
        Any other worker's copy may be a standby's, behind, or what it held before a restart
        gave the partition to another: served, it read as the platform's figures."""
        app = self.run.app
        return not app.rebalancing and any(
            tp.topic == topics.MONEY_EVENTS for tp in app.assignor.assigned_actives())

    @staticmethod
    def elsewhere(web: View) -> Response:
        return web.json({"error": "this worker does not serve the national clearing table "
                                  f"({topics.MONEY_EVENTS}): ask the worker whose GET "
                                  "/assignment/ says national_clearing: true, or again once "
                                  "a rebalance is over"}, status=503)

    def register_reconciliation(self) -> None:
        self.run.role(self.w.recon_requests, "reconciliation", self.on_recon_request)

    def rebalanced(self) -> None:
        """The table may have been recovered from its changelog: index and gauge built anew."""
        self.index_stale = self.gauge_stale = True

    def on_money_event(self, key: bytes | None, value: bytes | None) -> list[Send]:
        event = money_event(value)
        event_id = event.event_id.encode()  # kept once (settlement/ledger.py)
        if stored(self.w.clearing_events, event_id) is None:
            self.run.put(self.w.clearing_events, event_id, encode_to_keep(asdict(event)))
            self.run.later(partial(self.index.add, event_id, event))
            self.run.later(partial(metrics.observe_clearing, event))
        return []

    def catch_up(self) -> None:
        """The index and the net positions' gauge built anew from the clearing table, as it
        was recovered from its changelog. (Not by comparing sizes: a RocksDB table counts its
        keys by reading them all.)"""
        self.index.clear()
        events = []
        for k, v in self.w.clearing_events.items():
            events.append(event := SettlementEvent(**decode(v)))
            self.index.add(k, event)
        metrics.set_clearing_positions(events)
        self.index_stale = self.gauge_stale = False

    def events_for(self, req: dict[str, Any]) -> list[SettlementEvent]:
        """The money events a reconciliation request is answered from, read from the table.
        The index follows the table as events arrive; after a rebalance (the start included)
        it is built anew once (`catch_up`)."""
        if self.index_stale:
            self.catch_up()
        return [SettlementEvent(**decode(v)) for i in self.index.ids(*period_of(req))
                if (v := stored(self.w.clearing_events, i)) is not None]

    async def positions(self) -> None:
        """After a rebalance (a restart included), the worker serving the clearing table sets
        `huimin_clearing_net_position_fen` from the whole table, not only from the events it
        has taken since; any other worker exports none (its copy is a standby's)."""
        app = self.run.app
        if not self.gauge_stale or app.rebalancing:
            return
        if self.serves_table():
            self.catch_up()
        else:
            metrics.set_clearing_positions(())
            self.gauge_stale = False

    def on_recon_request(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = unwrap(value, "req")
        msgid = msg["req"]["msgid"].encode()
        kept = stored(self.w.recon_answers, msgid)
        if kept is not None:  # a duplicate: the original answer
            answer = decode(kept)
        else:
            answer = answer_reconciliation(msg["req"], self.events_for(msg["req"]))
            self.run.put(self.w.recon_answers, msgid, encode_to_keep(answer))
        return [self.run.to_hospital(answer, msg["ctx"], stamp(msg["trace"], NAT_IN),
                                     repeat=kept is not None)]

    def statements(self) -> dict[str, Any]:
        events = [SettlementEvent(**decode(v)) for v in self.w.clearing_events.values()]
        return {"events": len(events),
                "statements": [s.as_dict() for s in clear(events, self.policy)]}

    def trial_balance(self) -> dict[str, Any]:
        ledger = Ledger()
        ledger.post(SettlementEvent(**decode(v)) for v in self.w.clearing_events.values())
        return ledger.as_dict()


def money_event(value: bytes | None) -> SettlementEvent:
    """A money event as the insured roles write it; a JSON object that is not one (written
    by hand) is not a platform message (E1002, dead-lettered), not the platform's failure
    (E9001, paged) as it was."""
    fields = decode(value)
    try:
        return SettlementEvent(**fields)
    except (TypeError, ValueError):
        raise NotPlatformMessage("not a money event: setl_id, event, time (yyyy-MM-dd "
                                 "HH:mm:ss), fixmedins_code, insuplc_admdvs, mdtrtarea_admvs "
                                 "and amounts in whole fen from 0 are expected") from None

"""`huimin_clearing_net_position_fen` over the real broker: the worker serving the clearing
table exports each province's net position from all the money events kept, also after it
was killed and started again (its table recovered from the changelog), not only those it
took since its start; and an event whose amount is not whole fen is dead-lettered, not kept."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from huimin.local_platform import platform
from messages.topics import MONEY_EVENTS
from settlement.ledger import SettlementEvent
from simulators.world import WorldSpec
from streams.broker import broker
from streams.clearing_roles import CATCH_UP_EVERY_S
from tests.scraping import scrape, total
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=9, persons=300)

BEIJING, SHANGHAI, HEBEI = "110105", "310101", "130102"
EVENTS = [  # two cross-province settlements, one of them cancelled, and a local one
    SettlementEvent("S1", "settle", "2026-12-01 09:00:00", "H31010100001", BEIJING, SHANGHAI,
                    hifp_pay=12_345),
    SettlementEvent("S2", "settle", "2026-12-01 10:00:00", "H13010200001", BEIJING, HEBEI,
                    hifp_pay=50_000),
    SettlementEvent("S2", "cancel", "2026-12-02 10:00:00", "H13010200001", BEIJING, HEBEI,
                    hifp_pay=50_000),
    SettlementEvent("S3", "settle", "2026-12-01 11:00:00", "H11010500001", BEIJING, BEIJING,
                    hifp_pay=7_000),
]
#: money events the clearing must refuse (dead-lettered as no platform message, E1002: not
#: the platform's failure, E9001, as they were), not carry into its table and gauge
NOT_EVENTS = [{**asdict(EVENTS[0]), "setl_id": "S4", "hifp_pay": 100.5},
              {**asdict(EVENTS[0]), "setl_id": "S5", "hifp_pay": "100"},
              {"setl_id": "S6"},
              # past what an answer may hold, and a month that does not exist (a hostile-input
              # review: a fund of −¥10 trillion in the ledger, a statement for 2026-13)
              {**asdict(EVENTS[0]), "setl_id": "S7", "hifp_pay": -1_000_000_000_000_000},
              {**asdict(EVENTS[0]), "setl_id": "S8", "time": "2026-13-45 99:99:99"}]
#: receivable − payable: Shanghai's hospital was paid for a Beijing insured's settlement
EXPECTED = {"110000": -12_345.0, "310000": 12_345.0, "130000": 0.0}


def positions(port: int) -> dict[str, float]:
    return {dict(labels)["province"]: v
            for (name, labels), v in scrape(f"http://127.0.0.1:{port}/metrics").items()
            if name == "huimin_clearing_net_position_fen"}


def wait_for(port: int, want: dict[str, float], timeout_s: float = 60) -> dict[str, float]:
    return eventually(f"net positions {want}", lambda: positions(port),
                      lambda seen: seen == want, timeout_s, every_s=1)


def committed_past_every_event(bootstrap: str, timeout_s: float = 60) -> None:
    """Wait until the platform's group has committed every money event written."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="huimin",
                             enable_auto_commit=False)
    try:
        parts = [TopicPartition(MONEY_EVENTS, n)
                 for n in sorted(consumer.partitions_for_topic(MONEY_EVENTS) or ())]
        ends = consumer.end_offsets(parts)
        eventually("the worker's commits past the events", lambda: all(
            (consumer.committed(tp) or 0) >= end for tp, end in ends.items()),
            timeout_s=timeout_s, every_s=0.2)
    finally:
        consumer.close()


def test_the_net_positions_gauge_is_rebuilt_from_the_table_after_a_restart(tmp_path: Path):
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, SPEC, 1, tmp_path) as p:
        p.wait_until_serving()
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for event in [*NOT_EVENTS, *map(asdict, EVENTS)]:
            producer.send(MONEY_EVENTS, key=event["setl_id"].encode(),
                          value=orjson.dumps(event))
        producer.flush()
        producer.close()
        [worker] = p.workers
        assert wait_for(worker.cfg.web_port, EXPECTED) == EXPECTED
        samples = scrape(f"http://127.0.0.1:{worker.cfg.web_port}/metrics")
        assert total(samples, "huimin_dead_letters_total", reason="E1002",
                     source_topic=MONEY_EVENTS) == len(NOT_EVENTS)
        assert total(samples, "huimin_dead_letters_total", reason="E9001") == 0

        committed_past_every_event(bootstrap)  # else they are redelivered after the kill,
        # and a table not recovered would take them again and show the same gauge
        worker.restart_after_kill()
        p.wait_until_serving()
        # no new event arrives: the gauge can only come from the recovered table
        assert wait_for(worker.cfg.web_port, EXPECTED, 30 + 2 * CATCH_UP_EVERY_S) == EXPECTED

"""What a worker tells of its cluster's answers (streams/cluster_contact.py): the gauge follows
the asking, the cluster is called silent after two asks in a row went unanswered, the log says
so once, again only every minute while it stays so, and once when it answers again; one
broker down or frozen of several is no silence; the asks go on the coordination connections,
not behind the producer's writes. The real broker frozen under a worker:
tests/test_e2e_cluster_contact.py."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.client import ConnectionGroup

from streams import cluster_contact
from streams.cluster_contact import ClusterContact
from streams.metrics import CLUSTER_REACHABLE

ADDRESS = "kafka-1:9092,kafka-2:9092"


class FakeClient:
    """An aiokafka client's two calls the asking uses; `answers[node]`: "ok", "refused" or
    "frozen" (never answers)."""

    def __init__(self, answers: dict[int, str]) -> None:
        self.answers = answers
        self.asked: list[int] = []
        self.groups: set[object] = set()
        self.cluster = SimpleNamespace(
            brokers=lambda: [SimpleNamespace(nodeId=n) for n in self.answers])

    async def send(self, node: int, request: Any, *, group: object = None) -> object:
        self.asked.append(node)
        self.groups.add(group)
        if self.answers[node] == "refused":
            raise ConnectionError(f"node {node} not ready")
        if self.answers[node] == "frozen":
            await asyncio.sleep(3600)
        return object()


def reachable() -> float:
    return CLUSTER_REACHABLE._value.get()


def ask(contact: ClusterContact, client: Any) -> bool:
    return asyncio.run(contact.ask(client))


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_contact, "ANSWER_WITHIN_S", 0.05)


def test_an_answer_keeps_the_gauge_at_one_and_says_nothing(caplog: pytest.LogCaptureFixture):
    contact = ClusterContact(ADDRESS)
    client = FakeClient({1: "ok"})
    with caplog.at_level(logging.INFO, "huimin.streams"):
        assert ask(contact, client)
    assert reachable() == 1
    assert caplog.records == []
    assert client.groups == {ConnectionGroup.COORDINATION}  # not behind the writes


@pytest.mark.parametrize("other", ["refused", "frozen"])
def test_one_broker_down_or_frozen_of_three_is_no_silence(other: str):
    """All are asked at once: asked in turn, a frozen one used up the time (a review)."""
    contact = ClusterContact(ADDRESS)
    for _ in range(6):
        client = FakeClient({1: other, 2: other, 3: "ok"})
        assert ask(contact, client)
        assert sorted(client.asked) == [1, 2, 3]
    assert reachable() == 1


@pytest.mark.parametrize("answers", [{1: "frozen"}, {1: "refused", 2: "refused"}, {}])
def test_a_frozen_gone_or_unknown_cluster_sets_the_gauge_to_zero_and_is_said_once(
        answers: dict[int, str], caplog: pytest.LogCaptureFixture):
    contact = ClusterContact(ADDRESS)
    with caplog.at_level(logging.INFO, "huimin.streams"):
        assert not ask(contact, FakeClient(answers))
        assert reachable() == 1 and caplog.records == []  # one ask unanswered: not yet
        for _ in range(3):
            assert not ask(contact, FakeClient(answers))
            assert reachable() == 0
    [line] = caplog.records
    assert line.levelno == logging.ERROR
    assert f"the Kafka cluster at {ADDRESS} does not answer this worker" in line.getMessage()


def test_one_ask_unanswered_between_answers_is_no_silence(caplog: pytest.LogCaptureFixture):
    """A worker's loop held up for seconds by its own work makes one ask late."""
    contact = ClusterContact(ADDRESS)
    with caplog.at_level(logging.INFO, "huimin.streams"):
        for answer in ["ok", "frozen", "ok", "frozen", "ok"]:
            ask(contact, FakeClient({1: answer}))
            assert reachable() == 1
    assert caplog.records == []


def test_a_long_silence_is_said_again_every_minute_and_its_end_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    now = [1000.0]
    # the module's clock only: the event loop's own must run on
    monkeypatch.setattr(cluster_contact, "time", SimpleNamespace(monotonic=lambda: now[0]))
    contact = ClusterContact(ADDRESS)
    with caplog.at_level(logging.INFO, "huimin.streams"):
        for _ in range(30):  # 145 s of asking every 5 s
            ask(contact, FakeClient({1: "frozen"}))
            now[0] += 5
        ask(contact, FakeClient({1: "ok"}))
        ask(contact, FakeClient({1: "ok"}))
    said = [r.getMessage() for r in caplog.records]
    # the second ask (at 5 s) calls it silent; again at 65 s and 125 s; and the end: each
    # counted from the last answer (the worker's start here), not from the call (a review:
    # 27 s without an answer was told as 20 s)
    assert len(said) == 4, said
    assert "has not answered this worker for 65 s" in said[1]
    assert "has not answered this worker for 125 s" in said[2]
    assert said[3] == f"the Kafka cluster at {ADDRESS} answers this worker again, after 150 s " \
                      "without"
    assert reachable() == 1


def test_nothing_is_asked_before_the_producer_has_started():
    contact = ClusterContact(ADDRESS)
    CLUSTER_REACHABLE.set(1)
    assert ask(contact, None)
    assert reachable() == 1

"""The platform's Prometheus metrics, served at `/metrics` on every worker next to Faust's own
(`faust_*`, from its Prometheus sensor).

Names carry their unit; labels are province codes, infno, route, outcome, topic and hop —
bounded sets, never personal data, never a msgid or a hospital code.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from messages.codes import ErrorCode, Infno
from messages.platform import route_label
from messages.trace import HOPS, LATENCY_BUCKETS, hop_durations_ms
from simulators.regions import PROVINCES

# No `*_created` series beside every counter and histogram (the process's, the hospitals'
# and Faust's too): they doubled the series a scrape carries, and nothing reads them.
disable_created_metrics()

REQUESTS = Counter("huimin_requests_total", "Hospital requests received by the provincial "
                   "platforms", ["infno"])
ANSWERS = Counter("huimin_answers_total", "Answers sent to hospitals, by outcome (ok or the "
                  "error code)", ["infno", "outcome"])
LATENCY = Histogram("huimin_request_latency_seconds", "From a request's record reaching "
                    "hosp.requests (its Kafka timestamp) to its answer leaving for the "
                    "hospital, the wait in the topic included; settlement is infno 2207/2304. "
                    "A msgid's first answer only: a duplicate's or a redelivery's is not "
                    "timed",
                    ["route", "infno"], buckets=LATENCY_BUCKETS)
HOP_LATENCY = Histogram("huimin_hop_latency_seconds", "Time between two hops of a message "
                        "inside the platform", ["hop"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("huimin_in_flight_requests", "Requests forwarded by this worker's provincial "
                  "platform along the person's partitions (to the insured place, the national "
                  "platform or the record index) and not yet answered, by msgid; "
                  "reconciliations, answered from one partition, are not counted; a "
                  "rebalance starts the count afresh")
PAID = Counter("huimin_paid_fen_total", "Money paid for settlements (fen), by who paid it",
               ["insured_province", "treatment_province", "payer"])
REFUNDED = Counter("huimin_refunded_fen_total", "Money given back by cancellations and "
                   "reversals (fen)", ["insured_province", "treatment_province", "payer"])
DEAD_LETTERS = Counter("huimin_dead_letters_total", "Messages kept in dead.letters, by reason",
                       ["reason", "source_topic"])
REFUSED = Counter("huimin_refused_requests_total", "Requests refused before any processing: "
                  "E6001 unsigned, E6002 forged, E1002 on another partition of hosp.requests "
                  "than its key's", ["reason"])
CONSUMER_LAG = Gauge("huimin_consumer_lag_messages", "Messages not yet committed by this "
                     "worker, summed over its partitions", ["topic"])
FENCED_RECORDS = Counter("huimin_changelog_records_fenced_total", "Table changelog records "
                         "not applied: late writes of a worker that had lost its partitions "
                         "(streams/owner_fence.py)", ["table"])
REDELIVERY_WAITS = Counter("huimin_redelivery_waits_total", "Messages held in the person's "
                           "row until what they follow is read. Row treatment: a hospital "
                           "request taken before the answer to the one it follows (sent before "
                           "that answer came back: a duplicate, a 2601, a next request; or read "
                           "again before it after a restart), a settlement's answer taken before "
                           "the request its row lost in a restart came again. Row records: a "
                           "health-record query taken before the publish its row lost in a "
                           "restart came again", ["row"])
CLEARING_NET = Gauge("huimin_clearing_net_position_fen", "Each province's net cross-province "
                     "position so far: receivable − payable (fen)", ["province"])
EHR_PUBLISHED = Counter("huimin_ehr_documents_published_total", "Health-record documents "
                        "stored, by the province holding them", ["province"])
EHR_QUERIES = Counter("huimin_ehr_queries_total", "Record finds, retrievals and lab lookups "
                      "answered, by outcome", ["operation", "outcome"])
EHR_REFUSALS = Counter("huimin_ehr_refusals_total", "Record accesses a source province "
                       "refused (consent or purpose)", ["source_province"])
EHR_AUDIT = Counter("huimin_ehr_audit_events_total", "AuditEvents recorded", ["outcome"])
LABS_AVOIDED = Counter("huimin_lab_tests_avoided_total", "Lab tests not repeated: a "
                       "recognised result was reused")
LAB_SAVING = Counter("huimin_lab_saving_fen_total", "The price of the lab tests not repeated")
ROLE_CPU = Counter("huimin_role_cpu_seconds_total", "CPU time the worker's event loop spent "
                   "in each role's handler: the rules, the rows decoded and encoded, the table "
                   "writes handed to Faust. The worker's CPU beyond their sum is Faust, the Kafka "
                   "client and polling", ["role"])
ROLE_EVENTS = Counter("huimin_role_events_total", "Events each role's handler took", ["role"])
STARTED = Gauge("huimin_worker_start_time_seconds", "When this worker process started (Unix "
                "time): its changes count the restarts")
CLUSTER_REACHABLE = Gauge("huimin_cluster_reachable", "1 while this worker's Kafka cluster "
                          "answers it (asked every 5 s), 0 once two asks in a row went "
                          "unanswered within 4 s")
REBALANCING = Gauge("huimin_worker_rebalancing", "1 while this worker's consumer group is "
                    "rebalancing it or it recovers its tables (it serves none of its "
                    "partitions meanwhile, and its lag stands still), 0 otherwise; read every "
                    "5 s")


class ForwardedRequests:
    """The msgids this worker forwarded and has not yet answered, for `IN_FLIGHT`. Counted by
    msgid, not up and down: a duplicate is forwarded twice and answered twice, and a
    request or answer redelivered after a rebalance is answered by a worker that never
    forwarded it (counting down then drifted by one each time, without bound). A rebalance
    forgets them all (their answers may now leave from another worker), and one unanswered
    for `STALE_S` (its answer dead-lettered on the way back) is forgotten too."""

    STALE_S = 600.0

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def forwarded(self, msgid: str) -> None:
        self._since.setdefault(msgid, time.monotonic())

    def answered(self, msgid: str) -> None:
        self._since.pop(msgid, None)

    def forget(self) -> None:
        self._since.clear()

    def count(self) -> int:
        stale = time.monotonic() - self.STALE_S
        for msgid in [m for m, t in self._since.items() if t < stale]:
            del self._since[msgid]
        return len(self._since)


FORWARDED = ForwardedRequests()
IN_FLIGHT.set_function(FORWARDED.count)

#: What a dashboard or an alert rule may use (checked by the tests).
DOMAIN_METRICS = (
    REQUESTS, ANSWERS, LATENCY, HOP_LATENCY, IN_FLIGHT, PAID, REFUNDED, DEAD_LETTERS, REFUSED,
    CONSUMER_LAG, FENCED_RECORDS, REDELIVERY_WAITS, CLEARING_NET, EHR_PUBLISHED, EHR_QUERIES,
    EHR_REFUSALS, EHR_AUDIT, LABS_AVOIDED, LAB_SAVING, ROLE_CPU, ROLE_EVENTS, STARTED,
    CLUSTER_REACHABLE, REBALANCING)


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: label values are bounded sets, and the
    lookup (a lock and a validation per call) showed in the worker's profile."""
    return metric.labels(*labels)


class CachedChildren:
    """A metric of Faust's Prometheus sensor whose labelled children are looked up once (the
    sensor asks on every event); `remove`, which Faust calls on a rebalance, empties the
    cache so that no orphaned child keeps counting."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[Any, Any] = {}

    def labels(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, *kwargs.items())
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = self._metric.labels(*args, **kwargs)
        return found

    def remove(self, *labels: Any) -> None:
        self._children.clear()
        self._metric.remove(*labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def cache_faust_children(monitor: Any) -> None:
    """Wrap the labelled metrics of Faust's Prometheus sensor in `CachedChildren`, and work
    out each stream's label once: the sensor rebuilt it with a regular expression on every
    event (~1 % of the worker)."""
    found = monitor._metrics
    monitor._metrics = type(found)(*(CachedChildren(m) if getattr(m, "_labelnames", ())
                                      else m for m in found))
    label_of = monitor._stream_label
    labels: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def stream_label(stream: Any) -> str:
        label = labels.get(stream)
        if label is None:
            label = labels[stream] = label_of(stream)
        return label

    monitor._stream_label = stream_label


_INFNOS = frozenset(i.value for i in Infno)
_CODES = frozenset(c.value for c in ErrorCode)


def infno_label(value: Any) -> str:
    """An infno as a label only if it is one we know: a request's raw field is not trusted."""
    return value if value in _INFNOS else "other"


def outcome_of(answer: dict[str, Any]) -> str:
    if answer.get("infcode") == 0:
        return "ok"
    code = answer.get("err_code")
    return code if code in _CODES else "error"


def observe_answer(answer: dict[str, Any], ctx: dict[str, Any], trace: list) -> None:
    """An answer leaving for a hospital: count it, time it end to end and per hop."""
    infno = infno_label(ctx.get("infno"))
    child(ANSWERS, infno, outcome_of(answer)).inc()
    if trace:
        start = trace[0][1]
        child(LATENCY, route_label(ctx.get("route")), infno).observe(
            max(0.0, (time.time_ns() - start) / 1e9))
    for hop, ms in hop_durations_ms(trace).items():
        if hop in HOPS:
            child(HOP_LATENCY, hop).observe(ms / 1000)


def observe_money(event: Any) -> None:
    """A settlement (or its undoing) that changed a person's row."""
    payers = (("fund", event.fund_pay_sumamt), ("account", event.acct_pay),
              ("cash", event.medfee_sumamt - event.fund_pay_sumamt - event.acct_pay))
    counter = PAID if event.event == "settle" else REFUNDED
    for payer, amount in payers:
        child(counter, event.insured_province, event.treatment_province, payer).inc(amount)


def observe_clearing(event: Any) -> None:
    if event.cross_province:
        child(CLEARING_NET, event.treatment_province).inc(event.signed_amount)
        child(CLEARING_NET, event.insured_province).dec(event.signed_amount)


#: What `observe_ehr` names each record query by.
EHR_OPERATIONS = {"7002": "find", "7003": "retrieve", "7004": "lab-lookup"}


def export_at_zero(sources: list[str], tables: tuple[str, ...]) -> None:
    """Every series of a bounded label set the dashboard and alerts read, at 0 from a
    worker's start: answers by infno and outcome, dead letters by code and source, refusals,
    record queries, documents and refusals by province, fenced writes by table.
    `rate()` and `increase()` see a counter's first increment only from a 0 before it: a
    series that first appears at 1 read as nothing (a code seen once a worker never showed
    in "Errors by code", and each restart hid the first of each again). Not the money
    counters: a province pair by payer would be 2,883 series each, for the first of many
    amounts."""
    outcomes = ("ok", "error", *sorted(_CODES))
    for infno in (*sorted(_INFNOS), "other"):
        for outcome in outcomes:
            child(ANSWERS, infno, outcome)
    for source in sources:
        for code in sorted(_CODES):
            DEAD_LETTERS.labels(code, source)
    for code in (ErrorCode.UNSIGNED, ErrorCode.FORGED,  # the ingress's (E6003 is the rows')
                 ErrorCode.SCHEMA_VIOLATION):  # a request on another partition than its key's
        REFUSED.labels(code.value)
    for operation in EHR_OPERATIONS.values():
        for outcome in outcomes:
            child(EHR_QUERIES, operation, outcome)
    for province in PROVINCES:
        EHR_PUBLISHED.labels(province)
        EHR_REFUSALS.labels(province)
    EHR_REFUSALS.labels("other")
    for outcome in ("success", "refused"):
        child(EHR_AUDIT, outcome)
    for table in tables:
        FENCED_RECORDS.labels(table)
    for row in ("treatment", "records"):
        child(REDELIVERY_WAITS, row)
    STARTED.set_to_current_time()


def set_clearing_positions(events: Iterable[Any]) -> None:
    """`huimin_clearing_net_position_fen` anew from all the money events kept (none: no
    series, for a worker that does not serve the clearing table)."""
    net: dict[str, int] = {}
    for event in events:
        if event.cross_province:
            net[event.treatment_province] = net.get(event.treatment_province, 0) + \
                event.signed_amount
            net[event.insured_province] = net.get(event.insured_province, 0) - \
                event.signed_amount
    CLEARING_NET.clear()
    child.cache_clear()  # the cached children of every metric: CLEARING_NET's are gone
    for province, fen in net.items():
        child(CLEARING_NET, province).set(fen)


def province_label(province: str) -> str:
    """A province as a label: one of the known ones, or `other` (a label's values stay few
    whatever a request says)."""
    return province if province in PROVINCES else "other"


def observe_audit(audit: list[dict[str, Any]]) -> None:
    """AuditEvents added to a person's record: the hospitals' queries' and the operator's."""
    for event in audit:
        child(EHR_AUDIT, "success" if event["outcome"] == "0" else "refused").inc()
        if event["outcome"] != "0":
            province = event["source"]["observer"]["identifier"]["value"]
            EHR_REFUSALS.labels(province_label(province)).inc()


def observe_ehr(infno: str, answer: dict[str, Any], audit: list[dict[str, Any]]) -> None:
    """A record query answered by the source repositories, with the AuditEvents it added."""
    operation = EHR_OPERATIONS.get(infno, infno)
    child(EHR_QUERIES, operation, outcome_of(answer)).inc()
    observe_audit(audit)
    if infno == "7004" and answer.get("infcode") == 0:
        reusable = answer["output"]["reusable"]
        LABS_AVOIDED.inc(len(reusable))
        LAB_SAVING.inc(sum(r["saving"] for r in reusable))


def update_consumer_lag(consumer: Any) -> None:
    """Lag per topic over this worker's partitions: the highwater its fetches saw minus the
    offset it committed, or, on a partition just taken, the offset after the last it read
    (Faust's Consumer keeps all three; its Prometheus sensor does not).
    Changelogs are left out (their offsets are never committed: their lag would be a
    constant), and so is a topic this worker no longer serves (its series is removed)."""
    lag: dict[str, int] = {}
    for tp in consumer.assignment():
        if tp.topic.endswith("-changelog"):
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:
            continue
        done = consumer._committed_offset.get(tp)
        if done is None:  # a partition just taken, nothing committed here yet: what was read
            read = consumer._read_offset.get(tp)
            done = None if read is None else read + 1
        if end is None or done is None:  # nor read: not yet known (counted from 0, its whole
            lag.setdefault(tp.topic, 0)  # history read as lag, a false alarm each rebalance)
            continue
        lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - done)
    for topic in _LAGGING - lag.keys():
        CONSUMER_LAG.remove(topic)
    for topic, value in lag.items():
        CONSUMER_LAG.labels(topic).set(value)
    _LAGGING.clear()
    _LAGGING.update(lag)


_LAGGING: set[str] = set()  # the topics whose lag this worker exports

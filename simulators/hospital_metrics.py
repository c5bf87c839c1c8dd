"""What the simulated hospitals see, as Prometheus metrics: `huimin run --metrics-port` and
`huimin replay --metrics-port` serve them while they run. Round trips are measured where a HIS
measures them: from sending a request to its answer arriving."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from messages.trace import LATENCY_BUCKETS
from messages.visitlog import PLANNED_INFNOS

#: Their own registry, so that a worker started from the same CLI (`huimin worker`) does not
#: export the hospitals' series at 0 beside its own; with the process's standard collectors.
HOSPITAL_REGISTRY = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    HOSPITAL_REGISTRY.register(_standard)


SENT = Counter("huimin_hospital_requests_sent_total", "Visit requests the hospitals sent "
               "(duplicates included; not their sign-ins, daily reconciliations or the bad "
               "requests mixed in)", ["infno"], registry=HOSPITAL_REGISTRY)
for _infno in sorted(PLANNED_INFNOS):  # at zero, so that a rate() counts each one's first
    SENT.labels(_infno)
ROUND_TRIP = Histogram("huimin_hospital_round_trip_seconds", "From a hospital sending a request "
                       "to its first answer", ["route", "infno"], buckets=LATENCY_BUCKETS,
                       registry=HOSPITAL_REGISTRY)
IN_FLIGHT = Gauge("huimin_hospital_in_flight_requests", "Requests the hospitals await",
                  registry=HOSPITAL_REGISTRY)
VISITS = Counter("huimin_hospital_visits_finished_total",
                 "Visits ended: carried out, refused or given up", registry=HOSPITAL_REGISTRY)
TIMEOUTS = Counter("huimin_hospital_timeouts_total", "Awaited answers that never came",
                   registry=HOSPITAL_REGISTRY)
SEND_FAILURES = Counter("huimin_hospital_send_failures_total", "Requests the hospitals' Kafka "
                        "producer gave up delivering (after its retries), by what became of "
                        "them",
                        ["error"], registry=HOSPITAL_REGISTRY)
# what became of a request the producer gave up on (simulators/rdkafka_requests.py), from
# librdkafka's name for its error. Never sent: still queued when the hospitals closed, too
# large to send, no room in the producer's queue. Perhaps written, its acknowledgement never
# come (the platform then answers it as any other): not delivered within its time-out (a
# broker gone or too slow), in flight when the hospitals closed. Any other is counted as
# `other` (its name is in the log and the summary), so the label's values are known and every
# one is exported at zero: the first failure of any kind is an increase
# (HuiminHospitalSendFailures)
SEND_FAILURE_OF = {"_MSG_TIMED_OUT": "timed_out", "_TIMED_OUT": "timed_out",
                   "_TIMED_OUT_QUEUE": "timed_out",
                   "_PURGE_QUEUE": "unsent_at_close", "_PURGE_INFLIGHT": "in_flight_at_close",
                   "MSG_SIZE_TOO_LARGE": "too_large", "_QUEUE_FULL": "queue_full"}
SEND_FAILURE_KINDS = ("timed_out", "unsent_at_close", "in_flight_at_close", "too_large",
                      "queue_full", "other")
for _kind in SEND_FAILURE_KINDS:
    SEND_FAILURES.labels(_kind)


def send_failure_kind(error: str) -> str:
    """The `error` label of a request the producer gave up on with librdkafka's `error`."""
    return SEND_FAILURE_OF.get(error, "other")


READ_GAPS = Counter("huimin_hospital_read_gaps_total", "Jumps in the offsets of the answers "
                    "and dead letters read: fetched_again (a batch the broker showed late, read "
                    "once it came) or stepped_over (never came: what was there was not read)",
                    ["outcome"], registry=HOSPITAL_REGISTRY)
for _outcome in ("fetched_again", "stepped_over"):
    READ_GAPS.labels(_outcome)

HOSPITAL_METRICS = (SENT, ROUND_TRIP, IN_FLIGHT, VISITS, TIMEOUTS, SEND_FAILURES, READ_GAPS)

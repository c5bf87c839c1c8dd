"""An operator's read through the FHIR views reaches the person's row on `ehr.sources`
(`{"op": "audit", ...}`): the row keeps it as an entry, the trail gets its AuditEvent, and a
view of a huimin from before 2026-12-07, which sent the whole event, is taken alike."""

from __future__ import annotations

import orjson
import pytest

from messages import topics
from messages.codec import decode
from messages.platform import NotPlatformMessage
from records.audit import SUCCESS, audit_entry, audit_event_of
from records.exchange import RecordsRow
from simulators.world import WorldSpec, build_world
from streams.record_roles import RecordRoles
from streams.role import RoleRunner
from tests.in_process import in_process_wiring, taken

WORLD = build_world(WorldSpec(seed=3, persons=300))
CERTNO = next(iter(WORLD.ref.enrollments))


def operator_read(msgid: str) -> dict:
    return audit_entry(msgid=msgid, operation="operator-read", certno=CERTNO,
                       requester="platform-operator", requester_province="110000",
                       source_province="110000", purpose="HOPERAT", outcome=SUCCESS,
                       description="through the platform's FHIR view",
                       recorded="2026-12-07 08:00:00", document_id="d1")


def test_an_operators_read_is_kept_as_an_entry_and_its_event_goes_to_the_trail():
    wiring = in_process_wiring()
    run = RoleRunner(None, wiring.hosp_responses, wiring.dead_letters, {})
    roles = RecordRoles(run, wiring, WORLD.ref)
    key = CERTNO.encode()
    new, old = operator_read("op-new"), operator_read("op-old")
    sent_by = {"entry": new, "event": audit_event_of(old)}  # this huimin's view, and before
    trail = []
    for field, given in sent_by.items():
        for _ in range(2):  # the second a redelivery: written to the trail again, counted once
            sends = taken(run, roles.on_sources, key,
                          orjson.dumps({"op": "audit", field: given}))
            trail += [(t.get_topic_name(), decode(v)) for t, _, v, _ in sends]
    assert trail == [(topics.EHR_AUDIT, audit_event_of(new))] * 2 \
        + [(topics.EHR_AUDIT, audit_event_of(old))] * 2
    row = RecordsRow.from_dict(orjson.loads(wiring.ehr_records.data[key]))
    assert (row.audited, row.operator_audited) == (2, 2)
    assert row.audit == [new, audit_event_of(old)]
    assert row.audit_events() == [audit_event_of(new), audit_event_of(old)]


def test_an_access_no_view_would_write_is_refused_before_the_row_keeps_it():
    """Made into its AuditEvent only when read, a bad entry kept in the row would fail the
    person's /fhir/AuditEvent view for their next 100 accesses (found in a review)."""
    wiring = in_process_wiring()
    run = RoleRunner(None, wiring.hosp_responses, wiring.dead_letters, {})
    roles = RecordRoles(run, wiring, WORLD.ref)
    key = CERTNO.encode()
    for bad in ({k: v for k, v in operator_read("op-1").items() if k != "op"},
                {**operator_read("op-2"), "recorded": "yesterday"},
                {**operator_read("op-3"), "recorded": 20261207}):
        run.writes.clear()
        with pytest.raises(NotPlatformMessage, match="an access to audit as no view writes"):
            roles.on_sources(key, orjson.dumps({"op": "audit", "entry": bad}))
        assert run.writes == []
    assert key not in wiring.ehr_records.data

"""Health records across provinces over the real broker: hospitals in one province publish
FHIR written by others and by us; a hospital in another province finds and retrieves them;
a denied consent is refused and audited; a lab result is reused within its window and not
after it; the FHIR REST views answer; every access is on the audit trail of record
(`ehr.audit`) while a person's row keeps the latest; no personal data reaches the worker's
log."""

from __future__ import annotations

import base64
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from kafka import KafkaConsumer, TopicPartition

from huimin.local_platform import platform
from messages.identity import CERTNO_SYSTEM
from messages.topics import EHR_AUDIT
from messages.visitlog import make_msgid
from records.exchange import AUDIT_KEPT
from records.validation import Validator
from settlement.reference import DENY_CROSS_REGION, PERMIT
from simulators.hospital import HospitalFleet
from simulators.world import WorldSpec, build_world
from streams.broker import broker
from tests.conftest import FHIR_DATA, huimin_command
from tests.handmade import document_in

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=5, persons=400)
WORLD = build_world(SPEC)
FILES = sorted(FHIR_DATA.glob("*/*.json"))


def person(sharing: str) -> str:
    return next(c for c, e in sorted(WORLD.ref.enrollments.items()) if e.ehr_sharing == sharing)


class Hospitals:
    def __init__(self, fleet: HospitalFleet, web_port: int) -> None:
        self.fleet, self.web_port, self.seq = fleet, web_port, count(1)

    def request(self, infno: str, certno: str, province: str, inp: dict[str, Any],
                inf_time: str = "2026-12-10 10:00:00") -> tuple[str, dict[str, Any]]:
        h = next(h for h in WORLD.ref.hospitals.values() if h.province == province)
        return certno, {"infno": infno,
                        "msgid": make_msgid(h.fixmedins_code, inf_time, next(self.seq)),
                        "mdtrtarea_admvs": h.admdvs, "insuplc_admdvs": "",
                        "fixmedins_code": h.fixmedins_code, "inf_time": inf_time,
                        "input": inp}

    def send(self, *requests: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        answers = self.fleet.exchange(list(requests), timeout_s=60)
        out = []
        for _, req in requests:
            assert answers[req["msgid"]], f"{req['infno']} unanswered"
            out.append(answers[req["msgid"]][0])
        return out

    def get(self, path: str, **query: str) -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read())

    def write(self, method: str, path: str) -> tuple[int, dict[str, Any], str | None]:
        """A write's status, body and Allow header (the views refuse every write)."""
        url = f"http://127.0.0.1:{self.web_port}{path}"
        req = urllib.request.Request(url, data=b"{}", method=method,
                                     headers={"Content-Type": "application/fhir+json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, orjson.loads(r.read()), r.headers.get("Allow")
        except urllib.error.HTTPError as e:
            return e.code, orjson.loads(e.read()), e.headers.get("Allow")


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hospitals, Path]]:
    out = tmp_path_factory.mktemp("records")
    with broker(out / "broker.log") as bootstrap, platform(bootstrap, SPEC, 4, out) as p:
        fleet = HospitalFleet(bootstrap)
        try:
            hospitals = Hospitals(fleet, p.workers[0].cfg.web_port)  # one worker: it serves all
            # its views up and its partitions taken, whichever test runs first (one run alone
            # began with a view's GET, refused before the worker listened)
            hospitals.send(hospitals.request("1101", person(PERMIT), "110000", {}))
            yield hospitals, out
        finally:
            fleet.close()
    # after every test of the module, whichever ran: no citizen ID of the world reached the
    # worker's log (publishes, finds, retrieves, lab lookups, the views, their refusals)
    log = (out / "worker-0.log").read_text()
    assert [c for c in WORLD.ref.enrollments if c in log] == [], "a citizen ID is in the log"


def test_documents_published_in_one_province_are_found_and_retrieved_from_another(hospitals):
    h, _ = hospitals
    certno = person(PERMIT)
    home = WORLD.ref.enrollments[certno].province
    other = next(p for p in sorted(WORLD.ref.provinces) if p != home)
    resources = [orjson.loads(f.read_bytes()) for f in FILES]
    published = h.send(*(h.request("7001", certno, home, {"resource": r}) for r in resources))
    assert all(a["infcode"] == 0 for a in published), [a["err_msg"] for a in published]
    (found,) = h.send(h.request("7002", certno, other, {
        "patient_identifier": f"{CERTNO_SYSTEM}|{certno}", "purpose": "TREAT"}))
    assert found["output"]["total"] == len(FILES)
    ids = {a["output"]["entry"][0]["response"]["location"].split("/")[1]: r
           for a, r in zip(published, resources, strict=True)}
    assert {e["resource"]["id"] for e in found["output"]["entry"]} == set(ids)
    retrieved = h.send(*(h.request("7003", certno, other, {"document_id": i, "purpose": "TREAT"})
                         for i in ids))
    for answer, resource in zip(retrieved, ids.values(), strict=True):
        assert answer["infcode"] == 0
        assert answer["output"] == document_in(resource)

    status, search = h.get("/fhir/DocumentReference",
                           **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 200 and search["total"] == len(FILES)
    father = next(i for i, r in ids.items() if r.get("id") == "father")
    status, body = h.get(f"/fhir/Bundle/{father}")
    # as published, with the id it is read by (R4: a read's resource has the id asked for)
    assert status == 200 and body == {**ids[father], "id": father}
    # as MHD's Binary too, whatever its type: a published DocumentReference is reached so
    status, body = h.get(f"/fhir/Binary/{father}")
    assert status == 200 and body == ids[father]
    published_ref = next(i for i, r in ids.items() if r["resourceType"] == "DocumentReference")
    status, body = h.get(f"/fhir/Binary/{published_ref}")
    assert status == 200 and body == document_in(ids[published_ref])
    # where its DocumentReference says it is (MHD's consumers follow attachment.url)
    entry = next(e for e in search["entry"] if e["resource"]["id"] == published_ref)
    assert entry["resource"]["content"][0]["attachment"]["url"] == f"Binary/{published_ref}"
    # a searchset entry's fullUrl leads to its DocumentReference
    entry = next(e for e in search["entry"] if e["resource"]["id"] == father)
    base = f"http://127.0.0.1:{h.web_port}/fhir"
    assert entry["fullUrl"] == f"{base}/DocumentReference/{father}"
    status, docref = h.get(urllib.parse.urlsplit(entry["fullUrl"]).path)
    assert status == 200 and docref == entry["resource"]
    synthea = next(r for r in resources if r.get("type") == "batch" and any(
        e["resource"]["resourceType"] == "Patient" for e in r["entry"]))
    ident = next(e["resource"]["identifier"][0] for e in synthea["entry"]
                 if e["resource"]["resourceType"] == "Patient")
    status, pix = h.get("/fhir/Patient/$ihe-pix",
                        sourceIdentifier=f"{ident['system']}|{ident['value']}")
    assert status == 200
    targets = [p["valueIdentifier"] for p in pix["parameter"]]
    assert {"system": CERTNO_SYSTEM, "value": certno} in targets
    # and back from the insurance number the settlements show, to the citizen ID and the rest
    psn_no = next(t for t in targets if t["system"].startswith("urn:huimin:psn_no:"))
    status, back = h.get("/fhir/Patient/$ihe-pix",
                         sourceIdentifier=f"{psn_no['system']}|{psn_no['value']}")
    assert status == 200, back
    assert {"system": CERTNO_SYSTEM, "value": certno} in [
        p["valueIdentifier"] for p in back["parameter"]]
    # the city's code in the system (as settlements show insuplc_admdvs) is told apart
    city = psn_no["system"][:-4] + "0100"
    status, hint = h.get("/fhir/Patient/$ihe-pix", sourceIdentifier=f"{city}|{psn_no['value']}")
    assert status == 404 and "names the province" in hint["issue"][0]["diagnostics"], hint
    # ITI-83's targetSystem: only the identifiers of the domain asked for
    status, only = h.get("/fhir/Patient/$ihe-pix", targetSystem=CERTNO_SYSTEM,
                         sourceIdentifier=f"{psn_no['system']}|{psn_no['value']}")
    assert status == 200 and [p["valueIdentifier"] for p in only["parameter"]] == [
        {"system": CERTNO_SYSTEM, "value": certno}], only
    # a parameter a view would pass over is refused by name, not ignored
    status, refusal = h.get("/fhir/DocumentReference", status="superseded", _count="1",
                            **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 400, refusal
    assert "not supported here: _count (supported: patient.identifier, status;" in \
        refusal["issue"][0]["diagnostics"]
    for oddly in (certno, f"id:{certno}"):  # a name typed oddly, an ID number in it
        status, refusal = h.get("/fhir/Patient/$ihe-pix", **{oddly: "1"},
                                sourceIdentifier=f"{psn_no['system']}|{psn_no['value']}")
        assert status == 400 and certno not in str(refusal), refusal
    # what every FHIR client may add: JSON asked for is taken, another format refused
    status, _ = h.get("/fhir/DocumentReference", _format="json", _pretty="true",
                      **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 200
    status, refusal = h.get("/fhir/DocumentReference", _format="xml",
                            **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 406 and "application/fhir+json only" in str(refusal), refusal
    # what a FHIR client asks first: a valid CapabilityStatement of these views
    status, cap = h.get("/fhir/metadata")
    assert status == 200 and cap["resourceType"] == "CapabilityStatement"
    get_fhir_model_class("CapabilityStatement").model_validate(cap)
    searched = {r["type"]: [p["name"] for p in r.get("searchParam", [])]
                for r in cap["rest"][0]["resource"]}
    assert searched["DocumentReference"] == ["patient.identifier", "status"]
    assert searched["AuditEvent"] == ["entity.identifier"]
    # the views only read: a write is refused as FHIR clients read a refusal
    for method, path in (("POST", "/fhir/DocumentReference"), ("DELETE", "/fhir/Bundle/x"),
                         ("PUT", "/fhir/Patient/$ihe-pix")):
        status, refusal, allow = h.write(method, path)
        assert (status, allow) == (405, "GET, HEAD, OPTIONS"), (method, path)
        assert refusal["resourceType"] == "OperationOutcome" and \
            refusal["issue"][0]["code"] == "not-supported", refusal
    options = urllib.request.Request(f"http://127.0.0.1:{h.web_port}/fhir/DocumentReference",
                                     method="OPTIONS")
    with urllib.request.urlopen(options, timeout=10) as r:
        assert (r.status, r.headers.get("Allow")) == (204, "GET, HEAD, OPTIONS")
    status, missing = h.get("/fhir/Bundle/no-such-document")
    assert status == 404 and missing["resourceType"] == "OperationOutcome"
    # a search of no valid citizen ID is refused, naming what it needs
    for path, param in (("/fhir/DocumentReference", "patient.identifier"),
                        ("/fhir/AuditEvent", "entity.identifier")):
        status, refusal = h.get(path, **{param: f"{CERTNO_SYSTEM}|{certno[:-1]}"})
        assert status == 400 and param in refusal["issue"][0]["diagnostics"], refusal
    # the operator's search, read and identifier lookup are in the person's record, and
    # counted apart from the hospitals' accesses
    assert sorted(operator_accesses(h, certno, 9)) == [*["read"] * 4, *["search-type"] * 5]
    _, stats = h.get("/ehr/stats/")
    assert 9 <= stats["operator_accesses_audited"] < stats["audit_events"], stats


def operator_accesses(h: Hospitals, certno: str, expected: int) -> list[str]:
    """The REST interactions of the operator's audited accesses to a person's records, once
    `expected` of them have arrived (they travel through the ehr.sources topic) or 30 s."""
    deadline = time.monotonic() + 30
    found: list[str] = []
    while len(found) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        _, audit = h.get("/fhir/AuditEvent", **{"entity.identifier": f"{CERTNO_SYSTEM}|{certno}"})
        found = [e["resource"]["subtype"][0]["code"] for e in audit.get("entry", [])
                 if e["search"]["mode"] == "match"
                 and e["resource"]["purposeOfEvent"][0]["coding"][0]["code"] == "HOPERAT"]
    return found


def test_the_views_answer_as_fhir_r4_has_a_server_answer(hospitals):
    """What a FHIR client or an MHD consumer sends gets what FHIR R4's http, search and
    binary pages say (an interoperability tester's review): every body valid FHIR (no
    empty arrays), UTF-8 said, a searchset's self link, `status`, token systems, AND,
    lenient handling, Binary as a resource when FHIR JSON is asked for."""
    h, _ = hospitals
    certno = sorted(c for c, e in WORLD.ref.enrollments.items() if e.ehr_sharing == PERMIT)[10]
    home = WORLD.ref.enrollments[certno].province
    resource = orjson.loads(next(f for f in FILES if "father" in f.read_text()).read_bytes())
    (published,) = h.send(h.request("7001", certno, home, {"resource": resource}))
    doc_id = published["output"]["entry"][0]["response"]["location"].split("/")[1]
    base = f"http://127.0.0.1:{h.web_port}/fhir"
    validator = Validator()

    def get(query: str, path: str = "/fhir/DocumentReference",
            **headers: str) -> tuple[int, dict[str, Any], Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{h.web_port}{path}?{query}",
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body, got = r.status, orjson.loads(r.read()), r.headers
        except urllib.error.HTTPError as e:
            status, body, got = e.code, orjson.loads(e.read()), e.headers
        assert got["Content-Type"] == "application/fhir+json; charset=utf-8", path
        assert got["X-Content-Type-Options"] == "nosniff", path
        validator.validate(body)  # as the platform checks what it takes: no [] nor {}
        get_fhir_model_class(body["resourceType"]).model_validate(body)
        return status, body, got

    mine = urllib.parse.quote(f"{CERTNO_SYSTEM}|{certno}")
    status, all_docs, _ = get(f"patient.identifier={mine}")
    assert status == 200 and all_docs["total"] == 1
    assert all_docs["link"] == [{"relation": "self", "url":
                                 f"{base}/DocumentReference?patient.identifier={mine}"}]
    # MHD's consumers send status=current; nothing here is superseded
    status, current, _ = get(f"patient.identifier={mine}&status=current")
    assert status == 200 and current["entry"] == all_docs["entry"]
    status, none, _ = get(f"patient.identifier={mine}&status=superseded")
    assert status == 200 and none["total"] == 0 and "entry" not in none
    assert none["link"][0]["url"].endswith("&status=superseded")
    # a token: of its code system, or of none (a code has no system of its own), not another
    status_system = urllib.parse.quote("http://hl7.org/fhir/document-reference-status|")
    for given, total in ((f"{status_system}current", 1), ("%7Ccurrent", 1),
                         ("urn:other%7Ccurrent", 0), ("superseded,current", 1)):
        status, found, _ = get(f"patient.identifier={mine}&status={given}")
        assert (status, found["total"]) == (200, total), given
    # through a proxy, with no token set: refused, as the proxy's clients are not loopback's
    # (it served them all: a security review); behind one with a token, the links are where
    # the client reached the views (`views_base`, tests/test_fhir_search.py)
    status, proxied, _ = get(f"patient.identifier={mine}", **{
        "X-Forwarded-Proto": "https", "X-Forwarded-Host": "ehr.example",
        "X-Forwarded-For": "203.0.113.9"})
    assert status == 403 and "came through a proxy" in proxied["issue"][0]["diagnostics"]
    # a page whose name was rebound to 127.0.0.1 reads nothing in the operator's browser
    status, rebound, _ = get(f"patient.identifier={mine}", Host="rebind.example:80")
    assert status == 403 and "loopback name" in rebound["issue"][0]["diagnostics"]
    # a Host that is no host: not a loopback name either, and its markup is not echoed
    status, marked, _ = get(f"patient.identifier={mine}", Host='localhost"><img src=y>')
    assert status == 403 and "<img" not in orjson.dumps(marked).decode()
    # an identifier of another system, or of none (`|value`), is no one's here: no match
    for other in (f"urn:other|{certno}", f"|{certno}"):
        status, nobody, _ = get(f"patient.identifier={urllib.parse.quote(other)}")
        assert (status, nobody["total"]) == (200, 0) and "entry" not in nobody, other
    # everyone (`system|`), a list, or an AND of two identifiers: refused, not mis-answered
    two = urllib.parse.quote(f"{CERTNO_SYSTEM}|{person(PERMIT)}")
    for query, said in ((f"patient.identifier={urllib.parse.quote(CERTNO_SYSTEM + '|')}",
                         "one person at a time"),
                        (f"patient.identifier={mine},{two}", "one person at a time"),
                        (f"patient.identifier={mine}&patient.identifier={two}",
                         "more than once")):
        status, refusal, _ = get(query)
        assert status == 400 and said in refusal["issue"][0]["diagnostics"], query
    # an empty parameter is ignored; an unsupported one passed over when leniency is asked
    status, _, _ = get(f"patient.identifier={mine}&_count=")
    assert status == 200
    status, lenient, _ = get(f"patient.identifier={mine}&_count=1",
                             Prefer="handling=lenient")
    assert status == 200 and lenient["link"] == all_docs["link"]
    # read at its type, a resource has the id it is read by
    status, read, _ = get("", f"/fhir/Bundle/{doc_id}")
    assert status == 200 and read["id"] == doc_id
    # Binary: the document as published, or the Binary resource when FHIR JSON is asked for
    with urllib.request.urlopen(f"{base}/Binary/{doc_id}", timeout=10) as r:
        native = r.read()
    mhd = urllib.request.Request(f"{base}/Binary/{doc_id}",  # ITI-68, attachment's type
                                 headers={"Accept": "application/fhir+json"})
    with urllib.request.urlopen(mhd, timeout=10) as r:
        assert r.read() == native
    status, binary, _ = get("_format=json", f"/fhir/Binary/{doc_id}")
    assert status == 200 and binary["resourceType"] == "Binary" and binary["id"] == doc_id
    assert base64.b64decode(binary["data"]) == native and orjson.loads(native) == resource
    # PIX with no identifier in the domain asked for: Parameters with none
    status, pix, _ = get(f"sourceIdentifier={mine}&targetSystem=urn:nothing",
                         "/fhir/Patient/$ihe-pix")
    assert status == 200 and pix == {"resourceType": "Parameters"}
    # a format not given: 406 on every view
    for path in ("/fhir/metadata", f"/fhir/Bundle/{doc_id}", "/fhir/DocumentReference"):
        status, refusal, _ = get(f"_format=xml&patient.identifier={mine}", path)
        assert status == 406, path


def test_a_denied_consent_is_refused_across_provinces_and_audited(hospitals):
    h, _ = hospitals
    certno = person(DENY_CROSS_REGION)
    home = WORLD.ref.enrollments[certno].province
    other = next(p for p in sorted(WORLD.ref.provinces) if p != home)
    patient = orjson.loads((FHIR_DATA / "hl7-r4" / "Patient-example.json").read_bytes())
    (published,) = h.send(h.request("7001", certno, home, {"resource": patient}))
    assert published["infcode"] == 0
    find = {"patient_identifier": f"{CERTNO_SYSTEM}|{certno}", "purpose": "TREAT"}
    refused, own = h.send(h.request("7002", certno, other, find),
                          h.request("7002", certno, home, find))
    assert refused["infcode"] == -1 and refused["err_code"] == "E5002"
    assert refused["output"]["resourceType"] == "OperationOutcome"
    assert own["infcode"] == 0 and own["output"]["total"] == 1
    status, audit = h.get("/fhir/AuditEvent",
                          **{"entity.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 200
    assert [e["resource"]["outcome"] for e in audit["entry"]] == ["4", "0"]


def test_a_lab_result_is_reused_within_its_window_and_not_after_it(hospitals):
    h, _ = hospitals
    certno = sorted(c for c, e in WORLD.ref.enrollments.items() if e.ehr_sharing == PERMIT)[1]
    home = WORLD.ref.enrollments[certno].province
    other = next(p for p in sorted(WORLD.ref.provinces) if p != home)
    obs = orjson.loads((FHIR_DATA / "hl7-r4" / "Observation-f001.json").read_bytes())
    obs["effectiveDateTime"] = "2026-12-01T08:00:00+08:00"
    obs.pop("effectivePeriod", None)
    loinc = obs["code"]["coding"][0]["code"]
    (published,) = h.send(h.request("7001", certno, home, {"resource": obs},
                                    inf_time="2026-12-01 09:00:00"))
    assert published["infcode"] == 0
    lookup = {"loinc": [loinc], "purpose": "TREAT"}
    within, after = h.send(h.request("7004", certno, other, lookup, "2026-12-20 08:00:00"),
                           h.request("7004", certno, other, lookup, "2027-01-05 08:00:00"))
    assert [r["loinc"] for r in within["output"]["reusable"]] == [loinc]
    assert after["output"]["reusable"] == []


def audit_trail(bootstrap: str) -> dict[bytes, list[dict[str, Any]]]:
    """The AuditEvents on `ehr.audit`, by person key, in the order written."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(EHR_AUDIT, p) for p in consumer.partitions_for_topic(EHR_AUDIT)]
        consumer.assign(parts)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(parts)
        trail: dict[bytes, list[dict[str, Any]]] = {}
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    trail.setdefault(r.key, []).append(orjson.loads(r.value))
        return trail
    finally:
        consumer.close()


def test_every_access_is_on_the_audit_trail_and_the_row_keeps_the_latest(hospitals):
    h, _ = hospitals
    certno = sorted(c for c, e in WORLD.ref.enrollments.items() if e.ehr_sharing == PERMIT)[2]
    searches = AUDIT_KEPT + 20  # an operator's view polled: more than a row keeps
    for _ in range(searches):
        status, _ = h.get("/fhir/DocumentReference",
                          **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
        assert status == 200
    deadline, trail = time.monotonic() + 60, {}
    while len({e["id"] for e in trail.get(certno.encode(), [])}) < searches \
            and time.monotonic() < deadline:
        time.sleep(0.5)
        trail = audit_trail(h.fleet.bootstrap)
    # one of each id, in order (a redelivery writes an event again, the same)
    mine = list({e["id"]: e for e in trail[certno.encode()]}.values())
    assert len(mine) == searches
    _, audit = h.get("/fhir/AuditEvent", **{"entity.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    matches = [e for e in audit["entry"] if e["search"]["mode"] == "match"]
    # the row keeps what each event is made of: the view gives the trail's events, whole
    assert [e["resource"] for e in matches] == mine[-AUDIT_KEPT:]
    assert {e["resource"]["resourceType"] for e in matches} == {"AuditEvent"}
    assert audit["total"] == len(matches) == AUDIT_KEPT < searches  # the latest given, and
    # an outcome entry saying how many there are and where the rest are
    (outcome,) = [e["resource"] for e in audit["entry"] if e["search"]["mode"] == "outcome"]
    said = outcome["issue"][0]["diagnostics"]
    assert int(said.split()[0]) >= searches and "ehr.audit" in said, said
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in matches)
    # the repositories count every access the trail holds, of every person
    deadline, stats = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        everyone = sum(len({e["id"] for e in events})
                       for events in audit_trail(h.fleet.bootstrap).values())
        _, stats = h.get("/ehr/stats/")
        if stats["audit_events"] == everyone:
            break
        time.sleep(0.5)
    assert stats["audit_events"] == everyone >= searches


def test_a_tester_publishes_files_with_the_cli_and_finds_them_through_the_views(
        hospitals, tmp_path: Path):
    """`huimin publish`, as an EHR tester uses it: the real files and a broken one to a
    running platform, each answer told; published again with the same --at, duplicates
    answered as at first; what was taken found through the operator's search."""
    h, _ = hospitals
    certno = sorted(c for c, e in WORLD.ref.enrollments.items() if e.ehr_sharing == PERMIT)[5]
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Patient", "birthDate": "1970-13-41"}')
    (tmp_path / "not-json.json").write_text("nope")
    (tmp_path / "a-list.json").write_text("[1, 2]")  # JSON a request carries: E1002
    files = [str(f) for f in FILES[:3]]
    command = [huimin_command(), "publish", *files, str(broken), str(tmp_path / "a-list.json"),
               str(tmp_path / "not-json.json"),
               "--certno", certno, "--at", "2026-12-10 10:00:00",
               "--bootstrap", h.fleet.bootstrap]
    first = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert first.returncode == 1, first.stdout + first.stderr  # two were not published
    told = [orjson.loads(line) for line in first.stdout.splitlines()]
    assert [(t["code"], t["ok"]) for t in told] == [("201", True)] * 3 + [
        ("E5001", False), ("E1002", False), ("not sent", False)], told
    assert "Patient.birthDate" in told[3]["what"]
    assert told[5]["what"].startswith("E1001 not JSON")  # not sent: no request carries it
    assert all(t["msgid"].startswith("H") for t in told[:4])
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    for t in told[:3]:  # the same msgids, the same documents
        assert t["what"] in again.stdout and t["msgid"] in again.stdout
    assert again.stdout.splitlines()[-1].startswith("3 of 6 files published by H")
    # another file under the same --at reuses the first one's msgid: refused, not taken for
    # a duplicate of it
    other = subprocess.run([*command[:2], str(FILES[5]), *command[-6:], "--json"],
                           capture_output=True, text=True, timeout=120)
    (reused,) = [orjson.loads(line) for line in other.stdout.splitlines()]
    assert other.returncode == 1 and reused["code"] == "E1005", other.stdout + other.stderr
    assert reused["msgid"] == told[0]["msgid"]
    status, search = h.get("/fhir/DocumentReference",
                           **{"patient.identifier": f"{CERTNO_SYSTEM}|{certno}"})
    assert status == 200 and {f"DocumentReference/{e['resource']['id']}"
                              for e in search["entry"]} == {t["what"] for t in told[:3]}
    refused = subprocess.run([*command[:2], str(broken), "--certno", certno[:-1] + "X"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a valid citizen ID number" in refused.stderr


def test_an_identifier_published_for_two_persons_is_no_ones_in_pix(hospitals):
    """The platform does not check other domains' identifiers in a Patient: one published for
    two persons is answered 409, not with whichever person's row came first."""
    h, _ = hospitals
    first, second = sorted(c for c, e in WORLD.ref.enrollments.items()
                           if e.ehr_sharing == PERMIT)[7:9]
    patient = {"resourceType": "Patient", "identifier": [
        {"system": "urn:oid:2.16.156.10011.99.1", "value": "MRN-SHARED-1"}]}
    for certno in (first, second):
        home = WORLD.ref.enrollments[certno].province
        bundle = {"resourceType": "Bundle", "type": "document",
                  "identifier": {"system": "urn:ietf:rfc:3986",
                                 "value": f"urn:uuid:{uuid.uuid4()}"},
                  "timestamp": "2026-12-10T09:00:00+08:00", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {
                "resourceType": "Composition", "status": "final", "date": "2026-12-10",
                "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                "subject": {"reference": "urn:uuid:2"}, "title": "note",
                "author": [{"display": "Dr"}]}},
            {"fullUrl": "urn:uuid:2", "resource": patient}]}
        (answer,) = h.send(h.request("7001", certno, home, {"resource": bundle}))
        assert answer["infcode"] == 0, answer["err_msg"]
    deadline = time.monotonic() + 20  # each is registered in the index after its answer
    while True:
        status, ambiguous = h.get("/fhir/Patient/$ihe-pix",
                                  sourceIdentifier="urn:oid:2.16.156.10011.99.1|MRN-SHARED-1")
        if status == 409 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 409 and ambiguous["issue"][0]["code"] == "multiple-matches", ambiguous
    assert first not in str(ambiguous) and second not in str(ambiguous)


def test_no_row_is_read_past_the_views_and_an_unparsable_request_is_not_echoed(hospitals):
    """Faust's own `/table/` views read any table's row by key (a person's whole record:
    no operator gate, no audit) and `/router/` listed every worker; aiohttp answered a
    request line over 8,190 bytes quoting its start, a certno in the query with it."""
    h, _ = hospitals
    certno = sorted(WORLD.ref.enrollments)[0]
    h.send(h.request("7002", certno, WORLD.ref.enrollments[certno].province, {  # it serves
        "patient_identifier": f"{CERTNO_SYSTEM}|{certno}", "purpose": "TREAT"}))
    for path in (f"/table/ehr_records/{certno}/", f"/table/trt_persons/{certno}/", "/table/",
                 "/router/"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{h.web_port}{path}", timeout=10):
                raise AssertionError(f"{path} answered")
        except urllib.error.HTTPError as e:
            assert e.code == 404 and certno.encode() not in e.read(), path
    line = f"GET /fhir/DocumentReference?patient.identifier={certno}&x={'a' * 9_000} HTTP/1.1"
    with socket.create_connection(("127.0.0.1", h.web_port), timeout=10) as s:
        s.sendall(line.encode() + b"\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := s.recv(65_536):
            reply += chunk
    assert reply.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), reply[:300]
    assert certno.encode() not in reply and reply.endswith(b"\r\n\r\n400 Bad Request")

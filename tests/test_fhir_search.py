"""The FHIR views read a search's parameters as FHIR R4's search page has them: empty ones
ignored, unsupported ones refused unless leniency is asked for, one value of each, token
systems told apart from no system, `_format` JSON or 406."""

from __future__ import annotations

from multidict import CIMultiDict, MultiDict

from streams.fhir_search import (
    format_refusal,
    lenient,
    search_parameters,
    self_link,
    token,
)

SUPPORTED = ("patient.identifier", "status")


def query(*pairs: tuple[str, str]) -> MultiDict[str]:
    return MultiDict(pairs)


def test_the_supported_parameters_are_taken_with_their_one_value():
    taken, why = search_parameters(query(("patient.identifier", "s|1"), ("status", "current"),
                                         ("_pretty", "true"), ("_format", "json")), SUPPORTED)
    assert why is None and taken == {"patient.identifier": "s|1", "status": "current"}


def test_an_empty_parameter_is_ignored_as_search_html_says():
    taken, why = search_parameters(query(("patient.identifier", "s|1"), ("_count", ""),
                                         ("status", "")), SUPPORTED)
    assert why is None and taken == {"patient.identifier": "s|1"}


def test_an_unsupported_parameter_is_refused_unless_leniency_is_asked_for():
    given = query(("patient.identifier", "s|1"), ("_count", "2"), ("110101199003071233", "x"))
    taken, why = search_parameters(given, SUPPORTED)
    assert taken == {} and why is not None
    assert "not supported here: _count, (a parameter)" in why  # an ID number not echoed
    assert "110101199003071233" not in why
    taken, why = search_parameters(given, SUPPORTED, lenient=True)
    assert why is None and taken == {"patient.identifier": "s|1"}


def test_a_parameter_given_twice_is_refused_unless_it_may_repeat():
    twice = query(("patient.identifier", "s|1"), ("patient.identifier", "s|2"))
    taken, why = search_parameters(twice, SUPPORTED, lenient=True)
    assert taken == {} and "patient.identifier is given more than once" in (why or "")
    same = query(("patient.identifier", "s|1"), ("patient.identifier", "s|1"))
    assert search_parameters(same, SUPPORTED) == ({"patient.identifier": "s|1"}, None)
    systems = query(("targetSystem", "a"), ("targetSystem", "b,c"))
    assert search_parameters(systems, ("targetSystem",), repeatable=("targetSystem",)) == \
        ({"targetSystem": "a,b,c"}, None)


def test_a_token_without_a_bar_is_of_any_system_and_one_with_an_empty_system_of_none():
    assert token("urn:oid:1|42") == ("urn:oid:1", "42")
    assert token("|42") == ("", "42")
    assert token("42") == (None, "42")
    assert token("urn:oid:1|") == ("urn:oid:1", "")


def test_format_json_is_taken_and_any_other_refused():
    assert format_refusal(query(("_format", "json"))) is None
    assert format_refusal(query(("_format", "application/fhir+json"))) is None
    assert format_refusal(query()) is None
    assert "application/fhir+json only" in (format_refusal(query(("_format", "xml"))) or "")
    # a media type in any case, with parameters; not any value that holds "json" (a review)
    for taken in ("JSON", "application/FHIR+JSON", "application/fhir+json; charset=utf-8",
                  "application/json"):
        assert format_refusal(query(("_format", taken))) is None, taken
    for refused in ("notjsonatall", "fhir+jsonx", "application/xml+json"):
        assert format_refusal(query(("_format", refused))) is not None, refused


def test_a_proxys_forwarded_scheme_and_host_make_the_links_only_when_they_are_such():
    """X-Forwarded-Proto `javascript` and a host holding `"><script>` went into every
    fullUrl and self link (a review)."""
    from streams.fhir_views import views_base

    assert views_base({}, "http", "127.0.0.1:6066") == "http://127.0.0.1:6066/fhir"
    assert views_base({"X-Forwarded-Proto": "HTTPS, http", "X-Forwarded-Host":
                       "fhir.example.cn, proxy"}, "http", "w:6066") == \
        "https://fhir.example.cn/fhir"
    assert views_base({"X-Forwarded-Host": "[::1]:8443"}, "http", "w") == "http://[::1]:8443/fhir"
    assert views_base({"X-Forwarded-Proto": "javascript", "X-Forwarded-Host":
                       'evil.example"><script>'}, "http", "w:6066") == "http://w:6066/fhir"
    assert views_base({"X-Forwarded-Host": "a/b?c#d"}, "http", "w:6066") == "http://w:6066/fhir"
    # nor the request's own Host (it was copied into every link; bytes not UTF-8 were a 500)
    for host in ('x"><img src=y>', "", "\udcff"):
        assert views_base({}, "http", host) == "http://localhost/fhir", host
    # a container's name is a host (docker's `huimin_worker_1`), its port kept
    assert views_base({}, "http", "huimin_worker_1:6066") == "http://huimin_worker_1:6066/fhir"


def test_leniency_is_read_from_the_prefer_header():
    assert lenient(CIMultiDict({"Prefer": "handling=lenient"}))
    assert lenient(CIMultiDict({"prefer": "return=minimal, handling=lenient"}))
    assert lenient(CIMultiDict({"Prefer": 'handling = "lenient"'}))
    assert lenient(CIMultiDict([("Prefer", "return=minimal"), ("Prefer", "handling=lenient")]))
    # a parameter of another preference is not the preference (RFC 7240)
    assert not lenient(CIMultiDict({"Prefer": "respond-async; handling=lenient"}))
    assert not lenient(CIMultiDict({"Prefer": "handling=strict"}))
    assert not lenient(CIMultiDict())


def test_the_self_link_says_the_search_as_carried_out():
    assert self_link("http://h:1/fhir", "AuditEvent", {"entity.identifier": "s|1"}) == [
        {"relation": "self", "url": "http://h:1/fhir/AuditEvent?entity.identifier=s%7C1"}]
    assert self_link("http://h:1/fhir", "AuditEvent", {}) == [
        {"relation": "self", "url": "http://h:1/fhir/AuditEvent"}]

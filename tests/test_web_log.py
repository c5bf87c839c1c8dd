"""The worker's web server errors are logged without what the request said."""

from __future__ import annotations

import logging

import pytest

from streams.web_log import UNQUOTED, WEB_LOGGERS, log_web_errors_unquoted

CERTNO = "320300194303304802"


def _an_error_handling_a_request() -> None:
    try:
        raise ValueError(f"Got more than 8190 bytes: b'/fhir/DocumentReference?"
                         f"patient.identifier=urn:oid:2.16.156.10011.1.3|{CERTNO}&x=AAAA'")
    except ValueError:
        logging.getLogger(WEB_LOGGERS[0]).exception("Error handling request")


def test_a_web_error_is_logged_with_its_traceback_but_not_the_request_it_quotes(
        caplog: pytest.LogCaptureFixture) -> None:
    log_web_errors_unquoted()
    log_web_errors_unquoted()  # installed twice: once on each logger
    try:
        assert all(logging.getLogger(n).filters.count(UNQUOTED) == 1 for n in WEB_LOGGERS)
        with caplog.at_level(logging.ERROR, logger=WEB_LOGGERS[0]):
            _an_error_handling_a_request()
    finally:
        for name in WEB_LOGGERS:  # as the rest of the session had them
            logging.getLogger(name).removeFilter(UNQUOTED)
    logged = caplog.text
    assert "Error handling request" in logged
    assert "_an_error_handling_a_request" in logged  # the traceback stays
    assert "ValueError (its message is not logged" in logged
    assert CERTNO not in logged and "patient.identifier" not in logged

"""The worker's web server logs its errors without what the request said.

aiohttp logs a request it cannot parse (a URL over 8,190 bytes, a bad header) with the
exception, whose message quotes the start of the line: a FHIR search's URL carries a citizen ID
number (`patient.identifier=…|<certno>`), which then stood in the worker's log. The traceback
is kept, for a fault in a view; only the exception's message is left out.
"""

from __future__ import annotations

import logging
import traceback

#: aiohttp's loggers that log a request's errors with the exception
WEB_LOGGERS = ("aiohttp.server", "aiohttp.web")


class RequestsUnquoted(logging.Filter):
    """A record with an exception keeps its traceback and the exception's type, not its
    message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.exc_text = ("".join(traceback.format_tb(exc.__traceback__))
                               + f"{type(exc).__name__} (its message is not logged: it may "
                               "quote the request, personal data included)")
            record.exc_info = None
        return True


#: one filter for all: a logger takes the same filter once, however often it is installed
UNQUOTED = RequestsUnquoted()


def log_web_errors_unquoted() -> None:
    for name in WEB_LOGGERS:
        logging.getLogger(name).addFilter(UNQUOTED)

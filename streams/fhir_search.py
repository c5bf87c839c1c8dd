"""How the FHIR views read a search's parameters, as FHIR R4's search page has them
(http://hl7.org/fhir/R4/search.html), and write what they took into the searchset.

- A parameter with an empty value is ignored ("empty parameters are not an error").
- A parameter the view does not support is refused (400) rather than passed over: a server
  ignoring `status` or `_count` answers more than was asked, unsaid. A client that asks for
  that (`Prefer: handling=lenient`) has it: the parameter is passed over, and the
  searchset's self link shows what was used.
- A parameter given twice with different values (an AND) is refused: each view searches by
  one value of each.
- `_format` asks for JSON or is refused 406; `_pretty` is taken (the answer is compact all
  the same).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

#: A search parameter's name as FHIR spells them: a name typed otherwise, or holding a run
#: of digits (an ID number pasted in the wrong place), is not echoed
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_DIGITS = re.compile(r"\d{5}")
#: What every view takes besides its own: the format (JSON is all they give) and layout
GENERAL_PARAMETERS = ("_format", "_pretty")


def shown_names(names: list[str]) -> str:
    """Parameter names as a refusal may echo them."""
    return ", ".join(dict.fromkeys(p if _PARAMETER.fullmatch(p) and not _DIGITS.search(p)
                                   else "(a parameter)" for p in names))


#: `_format` values that ask for JSON (R4 http.html: `json` and the media types; a media
#: type in any case, with parameters, RFC 9110 §8.3.1).
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json",
                          "application/json+fhir", "text/json"})


def asks_json(value: str) -> bool:
    return value.split(";")[0].strip().lower() in JSON_FORMATS


def format_refusal(query: Any) -> str | None:
    """Why the answer cannot be given in the `_format` asked for (406), or None. (A value
    holding `json` anywhere passed, `notjsonatall` too, and `JSON` did not: a review.)"""
    if any(f and not asks_json(f) for f in query.getall("_format", [])):
        return "_format: these views answer application/fhir+json only"
    return None


def lenient(headers: Any) -> bool:
    """The client asked for unknown parameters to be passed over: a preference `handling`
    of `lenient` in any Prefer header (RFC 7240: preferences apart by commas, each with its
    own parameters after semicolons; spaces around `=` and a quoted value allowed)."""
    for given in headers.getall("Prefer", []):
        for preference in given.split(","):
            name, _, value = preference.split(";")[0].partition("=")
            if name.strip().lower() == "handling" and \
                    value.strip().strip('"').lower() == "lenient":
                return True
    return False


def search_parameters(query: Any, supported: tuple[str, ...], lenient: bool = False,
                      repeatable: tuple[str, ...] = ()) -> tuple[dict[str, str], str | None]:
    """The supported parameters given, each with its one value (those `repeatable` with
    their values joined by commas, an OR), and why the search is refused (None if it is
    not)."""
    taken: dict[str, str] = {}
    unknown: list[str] = []
    for name in dict.fromkeys(query):
        values = list(dict.fromkeys(v for v in query.getall(name) if v))
        if not values or name in GENERAL_PARAMETERS:
            continue
        if name not in supported:
            unknown.append(name)
        elif name in repeatable:
            taken[name] = ",".join(values)
        elif len(values) > 1:
            return {}, (f"{name} is given more than once: these views search by one value "
                        "of each parameter (an AND of two identifiers matches no one)")
        else:
            taken[name] = values[0]
    if unknown and not lenient:
        return {}, (f"search parameters not supported here: {shown_names(unknown)} "
                    f"(supported: {', '.join(supported)}; `Prefer: handling=lenient` "
                    "passes unsupported ones over)")
    return taken, None


def token(value: str) -> tuple[str | None, str]:
    """A token parameter's system and code: `[system]|[code]` (an empty system: the
    identifier has none), or `[code]` alone (None: any system)."""
    system, sep, code = value.partition("|")
    return (system, code) if sep else (None, value)


def self_link(base: str, kind: str, taken: dict[str, str]) -> list[dict[str, str]]:
    """The searchset's `link`: the search as it was carried out (search.html 3.1.1.6)."""
    query = f"?{urlencode(taken)}" if taken else ""
    return [{"relation": "self", "url": f"{base}/{kind}{query}"}]

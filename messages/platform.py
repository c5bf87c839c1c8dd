"""Messages inside the platform: the hospital's request (or the answer to it) travels with the
platform's context and the hop trace.

    {"req": <hospital Request>, "ctx": {...}, "trace": [[hop, ns], ...]}   requests
    {"ans": <Answer>,           "ctx": {...}, "trace": [...]}                answers

`ctx` carries what the next role needs and the hospital did not send: `route` (local|cross),
`infno`, `msgid`, `fixmedins_code`, `mdtrtarea_admvs`, `insuplc_admdvs`, `hosp_lv`, on a
settlement the treatment side's classified `fees`, and on a 2601 of a request the treatment
side refused, `original_refused` (the insured place never saw it: nothing to undo).
"""

from __future__ import annotations

import re
from typing import Any, Final

from messages import topics
from messages.codec import MalformedMessage, decode

_INFNO_TEXT = re.compile(r"[0-9]{1,8}")

LOCAL: Final = "local"
CROSS: Final = "cross"
#: The routes a request takes through the platform (`ctx["route"]`), as latency labels (the
#: workers' and the hospitals' alike).
ROUTES: Final = (LOCAL, CROSS, "recon", "ehr")
#: Kafka header of the answer to a sign-in (9001): the world the answering worker settles by
#: (`simulators.world.world_tag`), so hospitals see at once a platform started for another.
WORLD_HEADER: Final = "huimin-world"
#: On an answer given again (`1`): its msgid was answered before, and this is that answer (a
#: duplicate, or a request redelivered after a restart), whatever the request asked now.
REPEAT_HEADER: Final = "huimin-repeat"


def wrap_request(req: dict[str, Any], ctx: dict[str, Any], trace: list) -> dict[str, Any]:
    return {"req": req, "ctx": ctx, "trace": trace}


def wrap_answer(ans: dict[str, Any], ctx: dict[str, Any], trace: list) -> dict[str, Any]:
    return {"ans": ans, "ctx": ctx, "trace": trace}


class NotPlatformMessage(MalformedMessage):
    """JSON, but not what the platform's roles write on the topic it came from (a
    hospital's request written to an internal topic by hand, say)."""


def unwrap(value: bytes | None, carrying: str | None = None) -> dict[str, Any]:
    """A platform message: its `ctx` and `trace`, and the request or answer it carries
    (`carrying`: "req" or "ans"), else NotPlatformMessage, which the roles dead-letter as
    bad input rather than fail on as an internal error."""
    return wrapped(decode(value), carrying)


def wrapped(msg: dict[str, Any], carrying: str | None = None) -> dict[str, Any]:
    """`msg` if it is a platform message (`unwrap`), else NotPlatformMessage."""
    if not (isinstance(msg.get("ctx"), dict) and isinstance(msg.get("trace"), list)
            and (carrying is None or isinstance(msg.get(carrying), dict))):
        raise NotPlatformMessage(
            f"no {'ctx, trace and ' + carrying if carrying else 'ctx and trace'}: what the "
            f"platform's roles write here (a hospital's request goes to {topics.HOSP_REQUESTS})")
    return msg


def hospital_context(value: bytes | None, is_request: bool) -> dict[str, Any] | None:
    """Whom to answer about a message a role could not handle: a hospital request's own
    msgid and sender (`is_request`), or those in a platform message's ctx; None when the
    message names none (a money event, an operator's audit, bytes that are not JSON) or
    its request was answered already (a published document's registration)."""
    try:
        msg = decode(value)
    except MalformedMessage:
        return None
    if msg.get("op") == "register":  # a document's registration: its 7001 was answered
        return None
    ctx = msg if is_request else msg.get("ctx")
    if not isinstance(ctx, dict):
        return None
    msgid, sender = ctx.get("msgid"), ctx.get("fixmedins_code")
    if not (isinstance(msgid, str) and msgid and isinstance(sender, str) and sender):
        return None
    return {"infno": infno_text(ctx.get("infno")), "msgid": msgid, "fixmedins_code": sender}


def infno_text(value: Any) -> str:
    """A message's infno as text for an answer's context: what was sent if it is up to 8
    digits, as a string or a number, else "" (a sender's list nested 990 deep once made
    `str()` fail; a name sent as the infno would come back in the answer)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**8:
        return str(value)
    return value if isinstance(value, str) and _INFNO_TEXT.fullmatch(value) else ""


def route_label(value: Any) -> str:
    """A route as a label only if it is one of `ROUTES`: none (refused before it was
    routed), or anything else a message carries (a raw field, not trusted), is "other"."""
    return value if value in ROUTES else "other"

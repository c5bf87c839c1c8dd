"""Messages inside the platform: the hospital's request (or the answer to it) travels with the
platform's context and the hop trace.

    {"req": <hospital Request>, "ctx": {...}, "trace": [[hop, ns], ...]}   requests
    {"ans": <Answer>,           "ctx": {...}, "trace": [...]}                answers

`ctx` carries what the next role needs and the hospital did not send: `route` (local|cross),
`infno`, `msgid`, `fixmedins_code`, `mdtrtarea_admvs`, `insuplc_admdvs`, `hosp_lv` and, on a
settlement, the treatment side's classified `fees`.
"""

from __future__ import annotations

from typing import Any, Final

LOCAL: Final = "local"
CROSS: Final = "cross"


def wrap_request(req: dict[str, Any], ctx: dict[str, Any], trace: list) -> dict[str, Any]:
    return {"req": req, "ctx": ctx, "trace": trace}


def wrap_answer(ans: dict[str, Any], ctx: dict[str, Any], trace: list) -> dict[str, Any]:
    return {"ans": ans, "ctx": ctx, "trace": trace}

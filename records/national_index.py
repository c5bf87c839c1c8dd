"""The national index of the health-record exchange (records/exchange.py): which provinces
hold a person's documents, and a query sent on to those sources."""

from __future__ import annotations

from typing import Any

from messages.codes import Infno
from records.exchange import EhrAnswer, IndexRow


class NationalIndex:
    """Role 2: where each person's documents are; queries go on to their sources."""

    def handle(self, msg: dict[str, Any], row: IndexRow
               ) -> tuple[EhrAnswer | dict[str, Any] | None, IndexRow | None]:
        """A registration updates the row (and answers nothing); a query returns either an
        answer (nothing to ask) or the message for the sources, with `sources` added."""
        if msg["op"] == "register":
            row.docs[msg["doc_id"]] = msg["province"]
            for ident in msg["identifiers"]:
                if ident not in row.identifiers:
                    row.identifiers.append(ident)
            return None, row
        req = msg["req"]
        if req["infno"] == Infno.EHR_RETRIEVE:
            province = row.docs.get(req["input"]["document_id"])
            if province is not None:
                return {**msg, "sources": [province]}, None
            # an id the index does not know is decided and audited as the person's records
            # are: an answer before consent would tell anyone which documents exist
        return {**msg, "sources": row.provinces}, None

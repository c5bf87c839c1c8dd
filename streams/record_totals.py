"""`/ehr/stats/`'s totals over a worker's records rows, counted again only where rows changed.

The view is open to any caller (aggregate counts, no personal data) and runs on the loop the
roles run on. Decoding every row for every request let a stream of requests take a busy
worker's core (at 100,000 persons a count took seconds). Each row's counts are kept with
the hash of the bytes they were read from, so a request decodes only the rows written since
the last one; the rest is a walk over the keys. Rows still change in place as the roles
write them, so nothing is cached across a change: a row whose bytes differ is decoded anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import orjson

from records.exchange import RecordsRow
from streams.partitioner import key_partition

#: Records rows walked before the roles may go on (a decode of 250 rows: ~20 ms of a busy
#: worker's; 250 kept rows: well under 1 ms).
ROWS_AT_ONCE = 250
TOTALS = ("persons", "documents", "lab_results", "audit_events", "refusals_audited",
          "operator_accesses_audited")


def row_counts(value: bytes) -> tuple[int, ...]:
    """One row's part of each total, in the order of TOTALS."""
    row = RecordsRow.from_dict(orjson.loads(value))
    return (1, len(row.docs), len(row.labs), row.audited, row.refusals_audited,
            row.operator_audited)


class RecordsTotals:
    """The totals of one worker's records table, each row's counts kept with its bytes' hash
    and its key's partition (the key's murmur2 is itself pure Python: ~10 µs a key)."""

    def __init__(self) -> None:
        #: key -> (its partition among `partitions`, the hash of the row's bytes its counts
        #: were read from or None, those counts)
        self._kept: dict[bytes, tuple[int, int | None, tuple[int, ...]]] = {}
        self._partitions = 0

    async def count(self, records: Mapping[bytes, bytes], mine: set[int] | frozenset[int],
                    partitions: int) -> dict[str, int]:
        """The totals over the rows of the partitions `mine`; a row gone meanwhile (to
        another worker) is left out. Keys no longer in the table are forgotten."""
        if partitions != self._partitions:  # the keys' partitions are of another count
            self._kept, self._partitions = {}, partitions
        sums = [0] * len(TOTALS)
        kept: dict[bytes, tuple[int, int | None, tuple[int, ...]]] = {}
        for n, key in enumerate(list(records), start=1):
            if n % ROWS_AT_ONCE == 0:
                await asyncio.sleep(0)
            entry = self._kept.get(key) or (key_partition(key, partitions), None, ())
            if entry[0] in mine and (value := records.get(key)) is not None:
                if entry[1] != (digest := hash(value)):
                    entry = (entry[0], digest, row_counts(value))
                for i, c in enumerate(entry[2]):
                    sums[i] += c
            kept[key] = entry
        self._kept = kept
        return dict(zip(TOTALS, sums, strict=True))

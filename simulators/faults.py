"""Fault injection, planned up front from the seed so that the oracle knows what to expect and
a faulty run can be repeated exactly.

In the visit log (the plans of the visits, and the bad requests that go with them):
- `lose-answer=p`: a request's answer is lost; the HIS takes it as a time-out, sends 2601 for
  it (冲正), then sends the step again — as real HIS clients do. For half of the settlements
  it hits, the HIS does not notice (it went down before recording the answer): the visit ends
  there, the settlement stands on the platform, and the hospital's daily reconciliation finds
  it (3201 不平, then 3202 details it and the hospital posts it).
- `reorder=p`: a settlement's 2601 overtakes it: the reversal arrives first, the late original
  is refused (E4011), and the hospital settles again.
- `duplicate=p`: the very same request is sent twice.
- `malformed=p`: that share of extra bad requests (every kind of `simulators.bad_messages`).
Under any fault, each visit that settles ends with a 5206 query, so that the checker can prove
every such person's accumulators equal the sum of their settlements.
On the platform, while the visits are carried out:
- `kill-worker=n`: the platform worker is killed with SIGKILL n times during the run and
  restarted at once; Faust replays what it had not committed.
- `join-worker=n`: n more workers join the consumer group during the run (a rebalance: the
  partitions and their table state move to the newcomers).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from messages.visitlog import Visit, parse_step
from simulators.bad_messages import KINDS
from simulators.world import rng

#: Steps whose lost answer a HIS repairs with 2601 and a retry.
LOSABLE = frozenset({"2201", "2202", "2401", "2204", "2206", "2207", "2303", "2304", "2402"})
SETTLING = frozenset({"2207", "2304"})
#: At most this many worker kills, and workers joining, in one run: each kill waits out a
#: recovery (~15 s) and each join is a process of its own, so more would outlast any run.
MOST_WORKER_FAULTS = 10


class FaultPlanError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FaultPlan:
    duplicate: float = 0.0
    reorder: float = 0.0
    malformed: float = 0.0
    lose_answer: float = 0.0
    kill_worker: int = 0
    join_worker: int = 0

    @classmethod
    def parse(cls, text: str | None) -> FaultPlan:
        """`duplicate=0.05,reorder=0.05,malformed=0.01,lose-answer=0.02,kill-worker=1`."""
        if not text:
            return cls()
        names = {f.name.replace("_", "-"): f for f in fields(cls)}
        values: dict[str, float | int] = {}
        for part in text.split(","):
            name, sep, raw = part.strip().partition("=")
            f = names.get(name)
            if f is None:
                raise FaultPlanError(f"unknown fault {part.strip()!r}; known: "
                                     f"{', '.join(sorted(names))} (as name=value)")
            if not sep:
                raise FaultPlanError(f"{name} needs a value: {name}=…")
            if f.name in values:
                raise FaultPlanError(f"{name} is given twice")
            whole = f.type in (int, "int")
            try:
                value: float | int = int(raw) if whole else float(raw)
            except ValueError:
                raise FaultPlanError(f"{name}: {raw!r} is not "
                                     f"{'a whole number' if whole else 'a number'}") from None
            if not 0 <= value <= (MOST_WORKER_FAULTS if whole else 1):  # NaN too
                raise FaultPlanError(f"{name}: {raw} is out of range (0 to "
                                     f"{MOST_WORKER_FAULTS if whole else 1})")
            values[f.name] = value
        return cls(**values)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return ",".join(f"{f.name.replace('_', '-')}={getattr(self, f.name)}"
                        for f in fields(self) if getattr(self, f.name))

    @property
    def any(self) -> bool:
        return bool(str(self))

    def in_plans(self) -> FaultPlan:
        """The faults that live in the visit log (plans and bad requests)."""
        return FaultPlan(self.duplicate, self.reorder, self.malformed, self.lose_answer)

    def on_platform(self) -> FaultPlan:
        """The faults done to the platform's workers while a log is carried out."""
        return FaultPlan(kill_worker=self.kill_worker, join_worker=self.join_worker)

    def bad_per_kind(self, requests: int, base: int) -> int:
        """`base` bad requests of each kind, plus `malformed` × `requests` more in all."""
        return base + math.ceil(self.malformed * requests / len(KINDS))

    def apply(self, visits: Iterable[Visit], seed: int) -> Iterator[Visit]:
        """The visits, one at a time, with their plans rewritten by the faults (plain steps
        only) and each hospital's msgid sequence renumbered so that msgids stay unique."""
        r = rng(seed, f"faults:{self.in_plans()}")
        rewrite = self.any
        seq: dict[str, int] = {}
        for v in visits:
            steps = self._rewrite(v.steps, r) if rewrite else v.steps
            start = seq.get(v.fixmedins_code, 0)
            seq[v.fixmedins_code] = (start + len(steps)) % 10_000
            yield v if (steps, start) == (v.steps, v.seq) else \
                v.model_copy(update={"steps": steps, "seq": start})

    def _rewrite(self, plan: list[str], r: random.Random) -> list[str]:
        """Faulty steps in place of plain ones; a visit that settles ends with a 5206 query, so
        that every such person's accumulators are checked against their settlements."""
        steps: list[str] = []
        for step in plan:
            infno, marks = parse_step(step)
            roll = r.random()
            if marks:
                steps.append(step)
            elif infno in SETTLING and roll < self.lose_answer / 2:
                steps.append(f"{infno}~")  # unnoticed: found by reconciliation
                break
            elif infno in LOSABLE and roll < self.lose_answer:
                steps += [f"{infno}~", "2601", infno]
            elif infno in SETTLING and roll < self.lose_answer + self.reorder:
                steps += ["2601^", f"{infno}!", infno]
            elif roll < self.lose_answer + self.reorder + self.duplicate:
                steps.append(f"{infno}=")
            else:
                steps.append(step)
        if any(parse_step(x)[0] in SETTLING for x in plan) and plan[-1] != "5206":
            steps.append("5206")
        return steps

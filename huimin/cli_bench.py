"""`huimin bench` and `huimin bench-compare`."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Annotated

import orjson
import typer

from benchmarks.bounds import FIND_CAPACITY_LEAST, FIND_CAPACITY_MAX, MAX_VISITS_IN_FLIGHT
from benchmarks.profiles import py_spy
from huimin.cli_app import app, check_output, console, errors, refusal_exit
from huimin.cli_options import (
    FetchMinBytes,
    Seed,
    Store,
    check_broker_kind,
    check_cluster_address,
    check_reachable,
    check_world_fits,
    checked_store,
)
from huimin.cli_progress import progress_display, reporters
from huimin.local_platform import check_fresh
from simulators.interrupt import is_the_stop, raised_stops, terminated
from simulators.visits import MAX_VISITS
from simulators.world import MAX_PERSONS
from streams.broker import BOOTSTRAP_ENV
from streams.config import FETCH_MIN_BYTES, FETCH_WAIT_MS, KAFKA_FETCH_WAIT_MS, LINGER_MS


@app.command()
def bench(
    rates: Annotated[str, typer.Option(help="Offered loads, visits per second, comma-separated "
                                            "(about one settlement per visit).")
                     ] = "25,50,100",
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load per rate.")] = 30.0,
    warmup: Annotated[float, typer.Option(min=0, help="First seconds of each rate left out.")
                      ] = 5.0,
    broker: Annotated[str, typer.Option("--broker", help="tansu or kafka")] = "tansu",
    workers: Annotated[int, typer.Option(
        min=1, help="Platform workers (each a process, in one consumer group).")] = 1,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Partitions per topic (default: one per worker; fewer: less for the "
                    "broker to poll, fuller batches).")] = None,
    linger_ms: Annotated[int, typer.Option(
        min=0, help="Producers gather sends this long: fewer broker requests, ms per hop.")
                         ] = LINGER_MS,
    fetch_wait_ms: Annotated[int | None, typer.Option(
        min=0, help=f"Consumers' fetch wait. Default: {FETCH_WAIT_MS} on Tansu (it answers a "
                    f"waiting fetch only when the wait is up), {KAFKA_FETCH_WAIT_MS} on Kafka (it "
                    "answers when data arrives).")
                             ] = None,
    fetch_min_bytes: FetchMinBytes = FETCH_MIN_BYTES,
    persons: Annotated[int | None, typer.Option(
        min=1, max=MAX_PERSONS,
        help="Insured persons in the world. Default: 200 per visit/s of the highest rate "
             "offered (--find-capacity-max with --find-capacity), at least 20,000, so that "
             "as few visits wait for the same person's visit before them at every rate "
             "(2.5 % at 100/s).")] = None,
    seed: Seed = 42,
    ehr: Annotated[bool, typer.Option(help="Health-record steps in the visits too.")] = False,
    ceiling: Annotated[bool, typer.Option(help="Measure the raw broker ceiling too.")] = True,
    sweep_max: Annotated[float, typer.Option(
        min=0, help="Push the raw ceiling up to this many messages/s, doubling from twice "
                    "the highest rate (0: no sweep).")] = 12_800.0,
    out: Annotated[Path, typer.Option(help="Where bench.json, bench.md and bench.png go.")
                   ] = Path("bench"),
    store: Store = "memory",
    broker_warmup: Annotated[float | None, typer.Option(
        min=0, help="Seconds of unmeasured load on each fresh broker before it is measured. "
                    "Default: 40 on Kafka (its JVM compiles its hot paths meanwhile), 0 on "
                    "Tansu.")] = None,
    max_in_flight: Annotated[int, typer.Option(
        min=0, help="Visits under way at once before arrivals are dropped (and counted): "
                    "far past capacity, a backlog only takes minutes to drain and holds the "
                    "broker's memory. 0: no limit.")] = MAX_VISITS_IN_FLIGHT,
    profile: Annotated[bool, typer.Option(
        help="Sample the workers and the hospitals with py-spy while each rate runs: the "
             "report's 'Where the time goes', raw stacks in each rate's folder.")] = False,
    find_capacity: Annotated[bool, typer.Option(
        help="After --rates, offer more until huimin's capacity within the p99 target is "
             "known to within 25 %: double from the highest rate sustained, then bisect "
             "twice.")] = False,
    find_capacity_max: Annotated[float, typer.Option(
        min=1, help="The highest rate --find-capacity offers, visits/s.")] = FIND_CAPACITY_MAX,
) -> None:
    """Benchmark settlement latency and throughput against the raw broker ceiling.

    Open-loop load at each offered rate, beside the raw ceiling: plain aiokafka forwarders
    over as many hops."""
    from benchmarks.load import bench_persons, run_bench
    from benchmarks.plot import plot
    from benchmarks.report import markdown, write_json

    check_broker_kind(broker)
    if profile and py_spy() is None:
        raise typer.BadParameter("needs py-spy: pip install py-spy (huimin's dev extras "
                                 "include it)", param_hint="--profile")
    if any(not r.strip() for r in rates.split(",")) and rates.strip():
        raise typer.BadParameter("a rate left empty between commas", param_hint="--rates")
    try:
        offered = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise typer.BadParameter("numbers separated by commas", param_hint="--rates") from None
    if not offered or not all(0 < r < math.inf for r in offered):  # nan too
        raise typer.BadParameter("positive numbers", param_hint="--rates")
    if len(set(offered)) < len(offered):  # two rows of one rate, which bench-compare pairs
        twice = sorted({r for r in offered if offered.count(r) > 1})  # with one (a review)
        raise typer.BadParameter(f"{', '.join(f'{r:g}' for r in twice)} given twice: each "
                                 "rate once", param_hint="--rates")
    for value, hint in ((duration, "--duration"), (warmup, "--warmup"),
                        (sweep_max, "--sweep-max"), (find_capacity_max, "--find-capacity-max"),
                        (broker_warmup or 0.0, "--broker-warmup")):
        if not math.isfinite(value):
            raise typer.BadParameter("a finite number", param_hint=hint)
    if find_capacity_max != FIND_CAPACITY_MAX and not find_capacity:  # ignored, unsaid
        raise typer.BadParameter("the highest rate --find-capacity offers: give "
                                 "--find-capacity too", param_hint="--find-capacity-max")
    if find_capacity and find_capacity_max <= max(offered):
        raise typer.BadParameter(f"{find_capacity_max:g} visits/s, not above the highest of "
                                 f"--rates ({max(offered):g}): the search would offer nothing "
                                 "more", param_hint="--find-capacity-max")
    if warmup >= duration:
        raise typer.BadParameter(f"{warmup:g} s, not shorter than --duration ({duration:g} s): "
                                 "it must be, as the warm-up is left out of each rate's figures",
                                 param_hint="--warmup")
    if max(offered) * duration > MAX_VISITS:
        raise typer.BadParameter(f"at most {MAX_VISITS:,} visits a rate (rate × duration)",
                                 param_hint="--rates")
    # one visit, or none, would be all the figures; --find-capacity may halve down to its least
    lowest = min([*offered, *([FIND_CAPACITY_LEAST] if find_capacity else [])])
    if lowest * (duration - warmup) < 1:
        what = f"--rates {lowest:g}" if lowest in offered else \
            f"--find-capacity, which may search down to {lowest:g} visits/s,"
        raise refusal_exit(f"{what} gives fewer than one visit after the warm-up ({duration:g} s "
                       f"less {warmup:g} s): rate × (duration − warmup) must be at least 1")
    check_cluster_address(None)
    check_reachable(os.environ.get(BOOTSTRAP_ENV))
    if os.environ.get(BOOTSTRAP_ENV):  # every rate runs on that one cluster: fresh at first?
        check_fresh(os.environ[BOOTSTRAP_ENV], partitions=partitions or workers)
    fewer = "give fewer --persons"
    if persons is None:
        persons = bench_persons(max([*offered, find_capacity_max] if find_capacity
                                    else offered))
        fewer = f"give --persons (the rates make it {persons:,})"
    check_world_fits(persons, 1 + workers, f"the bench and its {workers} worker(s)",
                     f"{fewer} or fewer --workers")
    if out.exists() and not out.is_dir():
        raise refusal_exit(f"--out {out} is a file: give a folder for bench.json, bench.md and "
                       "bench.png")
    try:
        out.mkdir(parents=True, exist_ok=True)  # what it will write, refused before measuring
    except OSError as exc:
        raise refusal_exit(f"--out {out} cannot be made: {exc.strerror or exc}") from None
    for name in ("bench.json", "bench.md", "bench.png"):
        check_output(out / name, "--out")
        if not os.access(out / name if (out / name).exists() else out, os.W_OK):
            raise refusal_exit(f"{out / name} cannot be written: no permission")

    def report_what_was_measured(signum: int, _frame: object) -> None:
        """SIGTERM (a CI job's time-out) stops the sweep as Ctrl-C does: the rates measured
        are written and reported (exit 143), not thrown away with the rate under way."""
        errors.print("terminated (SIGTERM): stopping the rate under way, then writing the "
                     "rates measured", markup=False, highlight=False)
        raised_stops.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, report_what_was_measured)
    try:
        with progress_display() as progress:
            stage, done = reporters(progress, None)
            result = run_bench(offered, duration, warmup, broker, out, seed=seed,
                               persons=persons, workers=workers, ehr=ehr, ceiling=ceiling,
                               partitions=partitions or workers, linger_ms=linger_ms,
                               fetch_wait=fetch_wait_ms, fetch_min_bytes=fetch_min_bytes,
                               sweep_max=sweep_max,
                               store=checked_store(store), broker_warmup=broker_warmup,
                               max_in_flight=max_in_flight or None, profile=profile,
                               find_capacity=find_capacity,
                               find_capacity_max=find_capacity_max, on_stage=stage,
                               on_progress=done)
    except BaseException as exc:  # before any rate was measured: nothing to report
        if not is_the_stop(exc):
            raise
        errors.print(f"stopped by {'SIGTERM' if terminated() else 'Ctrl-C'} before any rate "
                     f"was measured: no report written to {out} (only the logs of what ran)",
                     markup=False, highlight=False)
        raise typer.Exit(128 + signal.SIGTERM if terminated() else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated():
        result["interrupted_by"] = "SIGTERM"
    write_json(result, out / "bench.json")
    report = markdown(result)
    (out / "bench.md").write_text(report)
    plot(result, out / "bench.png")
    console.print(report)
    console.print(f"Wrote {out / 'bench.json'}, {out / 'bench.md'} and {out / 'bench.png'}",
                  markup=False)
    if result["interrupted"]:
        raise typer.Exit(128 + signal.SIGTERM if terminated() else 130)


@app.command("bench-compare")
def bench_compare(
    before: Annotated[Path, typer.Argument(help="A bench folder (or its bench.json): before.")],
    after: Annotated[Path, typer.Argument(help="Another: after the change.")],
) -> None:
    """Compare two `huimin bench` runs side by side (Markdown).

    Rate by rate: settlements/s, p50, p99, CPU per visit and the CPU probe (how fast the
    machine ran meanwhile), with the settings that differ."""
    from benchmarks.compare import comparison, not_a_result

    def load(path: Path, hint: str) -> dict:
        file = path / "bench.json" if path.is_dir() else path
        try:
            result = orjson.loads(file.read_bytes())
            if (problem := not_a_result(result)) is not None:
                raise ValueError(problem)
            return result
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{file} is not a `huimin bench` result ({exc})",
                                     param_hint=hint) from None

    typer.echo(comparison(load(before, "BEFORE"), load(after, "AFTER")), nl=False)




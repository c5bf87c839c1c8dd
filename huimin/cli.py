"""The `huimin` command line."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from huimin.report import print_summary, summarise, write_outputs
from huimin.run import RunOptions, run_scenario
from simulators.visits import VisitSpec
from simulators.world import WorldSpec
from streams.broker import EmbeddedBroker

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="huimin: cross-province medical-insurance settlement and health-record "
                       "exchange, simulated on a real Kafka-protocol broker.")
console = Console()


@app.command()
def run(
    persons: Annotated[int, typer.Option(min=1, help="Insured persons in the world.")] = 5_000,
    visits: Annotated[int, typer.Option(min=1, help="Outpatient visits to carry out.")] = 2_000,
    cross_share: Annotated[float, typer.Option(min=0.0, max=1.0,
                                               help="Share of cross-province visits.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the world and the visits.")] = 42,
    rate: Annotated[float, typer.Option(min=0.1, help="Visit arrivals per second (open loop).")
                    ] = 50.0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions per topic.")] = 8,
    bad_per_kind: Annotated[int, typer.Option(
        min=0, help="Bad requests of each of the 16 kinds mixed in.")] = 2,
    out: Annotated[Path | None, typer.Option(help="Output folder (default out/run-<time>).")
                   ] = None,
) -> None:
    """Simulate, settle every visit through the platform, verify against the oracle, report.

    Uses the embedded broker unless KAFKA_BOOTSTRAP_SERVERS names a cluster. Exits 1 if any
    answer differs from the oracle or any request went unanswered.
    """
    opts = RunOptions(world=WorldSpec(seed=seed, persons=persons),
                      visits=VisitSpec(visits=visits, cross_share=cross_share),
                      rate=rate, partitions=partitions, bad_per_kind=bad_per_kind, out_dir=out)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as progress:
        task = progress.add_task("starting", total=visits)
        report = run_scenario(
            opts,
            on_stage=lambda s: progress.update(task, description=s),
            on_progress=lambda n: progress.advance(task, n),
        )
    summary = summarise(report)
    write_outputs(report, summary)
    print_summary(summary, report.out_dir, console)
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def broker() -> None:
    """Start the embedded Tansu broker alone, print its address, stop it on Ctrl-C."""
    with EmbeddedBroker() as b:
        console.print(f"Embedded broker (Tansu, memory storage) listening on [bold]{b.bootstrap}"
                      f"[/]\nUse it with: export KAFKA_BOOTSTRAP_SERVERS={b.bootstrap}\n"
                      "Ctrl-C stops it.")
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop and b.process is not None and b.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    console.print("Broker stopped.")


if __name__ == "__main__":
    app()

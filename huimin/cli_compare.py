"""`huimin compare`: two runs' money side by side, for a policy analyst setting one `--policy`
against another (registered on the app by huimin/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from huimin.cli_app import app, console, refusal_exit
from huimin.compare import NotARun, compared, read_run
from huimin.report import named_province, share_of
from settlement.money import yuan

_PAID_WORDS = {"medfee_sumamt": "medical fees", "hifp_pay": "fund",
               "acct_pay": "personal account", "psn_cash_pay": "cash"}


def _signed(fen: int) -> str:
    return ("+" if fen > 0 else "") + yuan(fen)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(exists=True, help="A `huimin run` output folder "
                                          "(or its summary.json), or a replay's "
                                          "<results>.summary.json.")],
    run_b: Annotated[Path, typer.Argument(exists=True, help="Another, set beside it.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON "
                                           "(fen).")] = False,
) -> None:
    """Two runs' money side by side: settled, paid, by the insured person's province what
    their fund paid, and by the month of settlement, B less A.

    Meant for two runs of the same scenario under two policies (`huimin run --policy`): it
    says so when the runs settled different visits, as their money then differs for more
    than the policy's sake. Exits 2 if a path is not a run's."""
    try:
        a, b = read_run(run_a), read_run(run_b)
    except NotARun as exc:
        raise refusal_exit(exc) from None
    out = compared(a, b)
    if json_out:
        console.print_json(orjson.dumps(out).decode())
        return
    for name, run in (("A", out["a"]), ("B", out["b"])):
        console.print(f"[bold]{name}[/] {escape(run['run'])}: the world of "
                      f"{escape(run['world'])}" + (f"; the policy from "
                                                   f"{escape(run['policy_file'])}"
                                                   if run["policy_file"] else ""),
                      soft_wrap=True)
    if out["differences_beyond_policy"]:
        console.print("[yellow]These runs settled different visits, so their money differs "
                      "for more than the policy's sake: "
                      + escape("; ".join(out["differences_beyond_policy"][:5])) + "[/]",
                      soft_wrap=True)
    paid = Table("", title="Paid (yuan)", title_justify="left")
    for heading in ("A", "B", "B − A"):
        paid.add_column(heading, justify="right")
    settled = out["settled"]
    paid.add_row("settlements", f"{settled['a']:,}", f"{settled['b']:,}",
                 f"{settled['b_less_a']:+,}")
    for key, words in _PAID_WORDS.items():
        row = out["paid_fen"][key]
        paid.add_row(words, yuan(row["a"]), yuan(row["b"]), _signed(row["b_less_a"]))
    console.print(paid)
    console.print(_by_province(out["by_insured_province_fen"]))
    if out["by_month_fen"]:
        console.print(_by_month(out["by_month_fen"]))


def _by_province(rows: dict[str, dict[str, dict[str, int]]]) -> Table:
    table = Table("insured in", title="Fund paid, by the insured person's province (yuan; its "
                  "share of the fees)", title_justify="left")
    for heading in ("settlements A", "B", "fund A", "B", "B − A", "share A", "B"):
        table.add_column(heading, justify="right")
    for province, paid in rows.items():
        fund, fees, count = paid["hifp_pay"], paid["medfee_sumamt"], paid["settlements"]
        table.add_row(named_province(province), f"{count['a']:,}", f"{count['b']:,}",
                      yuan(fund["a"]), yuan(fund["b"]), _signed(fund["b_less_a"]),
                      share_of(fund["a"], fees["a"]), share_of(fund["b"], fees["b"]))
    return table


def _by_month(rows: dict[str, dict[str, dict[str, int]]]) -> Table:
    table = Table("month", title="Paid, by the month of settlement (yuan, B − A; a policy's "
                  "change from a day shows from its month)", title_justify="left")
    for heading in ("settlements A", "B", "fund A", "B", "B − A", "personal account B − A",
                    "cash B − A"):
        table.add_column(heading, justify="right")
    for month, paid in rows.items():
        count, fund = paid["settlements"], paid["hifp_pay"]
        table.add_row(month, f"{count['a']:,}", f"{count['b']:,}", yuan(fund["a"]),
                      yuan(fund["b"]), _signed(fund["b_less_a"]),
                      _signed(paid["acct_pay"]["b_less_a"]),
                      _signed(paid["psn_cash_pay"]["b_less_a"]))
    return table

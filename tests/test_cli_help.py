"""`huimin --help` lists each command with a one-line summary, and a command's own help
wraps its paragraphs to the terminal rather than keeping the source's line breaks."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from huimin import cli

WIDE = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}


def help_of(*args: str) -> str:
    result = CliRunner().invoke(cli.app, [*args, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_listed_in_one_line_that_ends_its_sentence():
    listing = help_of()
    names = [c.name or c.callback.__name__ for c in cli.app.registered_commands]
    for name in names:
        row = re.search(rf"│ {re.escape(name)} +(.+?) *│\n", listing)
        assert row is not None, name
        assert row.group(1).endswith("."), f"{name}: {row.group(1)!r} runs on to a next line"


def test_a_commands_details_are_wrapped_to_the_terminal_not_to_the_source():
    text = help_of("bench")
    assert "plain aiokafka forwarders over as many hops." in text
    text = help_of("clearing")
    assert "per province payable, receivable, net, prepayment and top-up" in text


def test_a_flag_is_not_shown_as_taking_a_value():
    """Typer tags a flag `<bool>`, which reads as `--json true`; a value-taking option keeps
    its type."""
    text = help_of("clearing")
    assert re.search(r"│ --json +Print JSON", text), text
    assert "<bool>" not in text and "<int range>" in text
    assert "<bool>" not in help_of("run") + help_of()


def test_version_names_the_package_version_and_the_wire_contracts():
    result = CliRunner().invoke(cli.app, ["--version"], env=WIDE)
    assert result.exit_code == 0 and re.fullmatch(
        r"huimin \d+\.\d+\.\d+( \(git \S+\))?, wire contract \d+\n", result.output), \
        result.output


def test_help_read_by_a_script_keeps_every_option_name_whole():
    """Piped (`huimin replay --help | grep …`), rich drew it 80 columns wide and cut names
    short: `--stop-after-unreac…`, `KAFKA_BOOTSTRAP_…` (a scripting review)."""
    from tests.conftest import run_huimin

    for command, names in (("run", ["--stop-after-unreachable"]),
                           ("replay", ["--stop-after-unreachable", "--security-protocol",
                                       "KAFKA_BOOTSTRAP_SERVERS"]),
                           ("bench", ["--find-capacity-max"])):
        text = run_huimin([command, "--help"], timeout=60).stdout
        assert all(name in text for name in names), text
        assert not re.search(r"-[\w-]+…", text), text

"""Tests of the `kerasdl` command dispatcher (kerasdl/cli/__init__.py)."""

import json
import sys
import types

import pytest

from kerasdl import cli


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("command", cli.SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"kerasdl {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["describe", "text_cnn", "--json"],
        ["describe", "--json", "text_cnn"],
    ],
)
def test_options_may_come_before_or_after_inputs(argv, capsys):
    assert cli.main(argv) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["total_count"] == 6023


def test_options_may_follow_a_list_of_inputs(monkeypatch):
    # `predict PATH INPUT... --json`: a plain argparse parse stops filling
    # the `*` positional at the first option and rejects the rest.
    seen = {}
    fake = types.ModuleType("kerasdl.cli.predict")
    fake.add_arguments = lambda parser: (
        parser.add_argument("path"),
        parser.add_argument("inputs", nargs="*"),
        parser.add_argument("--json", action="store_true"),
    )
    fake.run = lambda args: seen.update(vars(args)) or 0
    monkeypatch.setitem(sys.modules, "kerasdl.cli.predict", fake)

    assert cli.main(["predict", "model", "--json", "a b ?", "c d ?"]) == 0
    assert seen == {"path": "model", "inputs": ["a b ?", "c d ?"], "json": True}


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["trian"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'trian'" in capsys.readouterr().err

"""docs/reference.md is the command reference generated from the settings, and current."""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def test_the_command_reference_is_current():
    from isonet_pl.cli.reference import markdown

    assert REFERENCE.read_text() == markdown(), \
        "docs/reference.md is stale: regenerate it with `python -m isonet_pl.cli.reference docs/reference.md`"


def test_the_reference_lists_every_command_and_option():
    import click
    from isonet_pl.cli.main import cli

    text = REFERENCE.read_text()
    for name, command in cli.commands.items():
        assert f"## {name}\n" in text
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"`{param.opts[0]}" in text, (name, param.opts[0])

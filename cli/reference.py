"""The command reference (``docs/reference.md``), generated from the click commands and so from the settings
models they are built from: one source for ``--help``, the GUI's forms and the reference.

Regenerate with ``python -m isonet_pl.cli.reference docs/reference.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

HEADER = ("# Command reference\n\n"
          "Generated from the settings of each command (`python -m isonet_pl.cli.reference docs/reference.md`); "
          "the same text as `isonet-pl COMMAND --help`. Options are spelled as IsoNet spells them "
          "(`--pixel_size`); the dashed spelling (`--pixel-size`) works too. A setting can also come from a "
          "`--config` file (sections named after the commands, see `isonet-pl config`).\n")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _command(name: str, command: click.Command, parent: click.Context) -> list[str]:
    ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
    lines = [f"## {name}", "", f"`{' '.join(command.collect_usage_pieces(ctx))}`".replace("`", "`isonet-pl "
                                                                                        f"{name} ", 1), ""]
    help_text = (command.help or "").replace("\b\n", "")
    lines += [help_text.strip(), ""]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    if arguments:
        lines += ["| argument | |", "|---|---|"]
        lines += [f"| `{p.name.upper()}` | {'required' if p.required else f'default: {p.default}'} |"
                  for p in arguments]
        lines.append("")
    groups: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "group", "Options"), []).append(record)
    for group, records in groups.items():
        lines += [f"**{group}**", "", "| option | |", "|---|---|"]
        lines += [f"| `{_cell(opts)}` | {_cell(text)} |" for opts, text in records]
        lines.append("")
    return lines


def markdown() -> str:
    """The reference of every ``isonet-pl`` command, in the order of the workflow, as Markdown."""
    from isonet_pl.cli.main import cli

    parent = click.Context(cli, info_name="isonet-pl", **cli.context_settings)
    lines = [HEADER]
    for name in cli.list_commands(parent):
        lines += _command(name, cli.commands[name], parent)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    text = markdown()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)

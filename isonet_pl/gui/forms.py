"""The GUI's forms, read from the CLI's own definitions, and their validation.

A form is a click command of the CLI (the group the GUI is given): its arguments (STAR file, folder,
model) and its options, whose types, defaults, choices and help come from the
command's settings section (:func:`isonet_pl.fields.section_fields`). Validation parses
the command line the form makes with that same click command and applies the settings
with :func:`isonet_pl.config.with_overrides`, exactly as the CLI does, so a bad value
gets the CLI's one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from isonet_pl.config import OPTION_GROUPS, IsoNetConfig, with_overrides
from isonet_pl.errors import IsoNetError
from isonet_pl.fields import FieldSpec, format_value, section_fields
from isonet_pl.io.star import parse_tomo_idx

#: Commands the GUI can run as jobs; the section of each is the IsoNetConfig field of that name.
COMMANDS = ("prepare_star", "simulate", "deconv", "make_mask", "extract", "refine", "predict", "convert")
_SECTION_OF = {"convert": "io"}


#: Commands whose STAR argument they write rather than read.
_MAKES_ITS_STAR = ("prepare_star", "simulate")
#: Arguments and options naming what a job writes (or rewrites: a tomogram table): they must lie inside the
#: project folder, links resolved, as the page's own writes do.
WRITTEN = ("star_file", "out_dir", "output_star", "subtomo_folder", "subtomo_star", "deconv_folder", "mask_folder",
           "result_dir", "output_dir", "continue_from")


class FormError(Exception):
    """A form the CLI would reject; the message is the CLI's (``Error: ...``)."""


def _command(group: click.Group, name: str) -> click.Command:
    if name not in COMMANDS:
        raise FormError(f"Error: no such command {name!r} (one of {', '.join(COMMANDS)})")
    return group.commands[name]


def _section(name: str):
    return IsoNetConfig.model_fields[_SECTION_OF.get(name, name)].annotation


def _argument_kind(name: str) -> str:
    """What an argument names, so the page can offer matching files."""
    if "star" in name:
        return "star"
    if name == "model":
        return "ckpt"
    return "folder"


def _option(spec: FieldSpec) -> dict[str, Any]:
    default = None if spec.default is None else spec.default_text
    if spec.kind == "bool" and default is not None:
        default = default.lower()  # as the page's true/false choices write it
    return {"name": spec.name, "kind": spec.kind, "default": default,
            "description": spec.description, "choices": list(spec.choices) if spec.choices else None,
            "nullable": spec.nullable, "group": spec.group}


def command_form(group: click.Group, name: str) -> dict[str, Any]:
    """The form of one command of ``group`` (the CLI): its help, arguments and options with the CLI's defaults."""
    command = _command(group, name)
    fields = {spec.name: spec for spec in section_fields(_section(name))}
    arguments, options = [], []
    for param in command.params:
        if isinstance(param, click.Argument):
            arguments.append({"name": param.name, "kind": _argument_kind(param.name), "required": param.required,
                              "default": param.default if isinstance(param.default, str) else None})
        elif param.name in fields:
            options.append(_option(fields[param.name]))
        elif isinstance(param, click.Option) and not param.hidden:  # e.g. --tomo_idx
            options.append({"name": param.name, "kind": "str", "default": None, "description": param.help or "",
                            "choices": None, "nullable": True, "group": "Options"})
    order = list(OPTION_GROUPS.get(_section(name).__name__, {}))
    options.sort(key=lambda o: order.index(o["group"]) if o["group"] in order else len(order))  # stable
    help_text = (command.help or "").split("\n")[0]
    return {"name": name, "help": help_text, "arguments": arguments, "options": options}


def schema(group: click.Group) -> dict[str, Any]:
    """The forms of every command the GUI runs, keyed by command name."""
    return {name: command_form(group, name) for name in COMMANDS}


def _text(value: Any) -> str | None:
    """A form value as command-line text; None for an empty field."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = format_value(tuple(value)) if isinstance(value, list) else str(value)
    return text.strip() or None


def command_line(group: click.Group, name: str, arguments: dict[str, Any], options: dict[str, Any],
                 folder: Path | None = None) -> list[str]:
    """The command line of a form, checked as the CLI checks it; with ``folder`` (where the job will run),
    input files named by the arguments (STAR files, the model) must exist there, so a missing one is
    reported at once, not after the job has started.

    Options left empty, or equal to their default, are left out (the CLI then uses the
    default too).

    Returns
    -------
    list of str
        ``[command, *arguments, --option value, ...]``, ready for ``isonet-pl``.

    Raises
    ------
    FormError
        With the CLI's message for a missing argument, an unknown option, a value of the
        wrong type or a setting outside its range.
    """
    form = command_form(group, name)
    known = {o["name"]: o for o in form["options"]}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FormError(f"Error: No such option: --{unknown[0]}")
    argv = [name]
    for arg in form["arguments"]:
        text = _text(arguments.get(arg["name"]))
        if text is None and arg["default"] is not None:
            text = str(arg["default"])
        if text is None:
            raise FormError(f"Error: Missing argument '{arg['name'].upper()}'.")
        _check_text(arg["name"].upper(), text)
        if text.startswith("-"):
            raise FormError(f"Error: {arg['name'].upper()} {text!r} starts with '-'; write it as ./{text}")
        if folder is not None and arg["kind"] in ("star", "ckpt") and name not in _MAKES_ITS_STAR:
            if not (folder / text).is_file():
                raise FormError(f"Error: {arg['name'].upper()} {text} does not exist in {folder}; choose an "
                                "existing file (or run the step that makes it first)")
        if folder is not None and arg["name"] in WRITTEN:
            _check_inside(folder, arg["name"].upper(), text)
        argv.append(text)
    for opt_name, value in options.items():
        text = _text(value)
        if text is None:
            continue
        text = _checked_value(known[opt_name], text)
        if folder is not None and opt_name in WRITTEN:
            _check_inside(folder, f"--{opt_name}", text)
        if opt_name == "tomo_idx":
            try:
                parse_tomo_idx(text)
            except IsoNetError as exc:
                raise FormError(f"Error: {exc}") from None
        if text != known[opt_name]["default"]:
            argv.append(f"--{opt_name}={text}")  # one word: a value can never become an option
    validate(group, argv)
    return argv


def _check_inside(folder: Path, name: str, text: str) -> None:
    """Refuse a path a job would write outside ``folder`` (``..``, an absolute path, or a link leading out)."""
    import os

    path = os.path.join(os.path.abspath(folder), text)
    for candidate, root in ((os.path.normpath(path), os.path.abspath(folder)),
                            (os.path.realpath(path), os.path.realpath(folder))):
        if os.path.commonpath([candidate, root]) != root:
            raise FormError(f"Error: {name} {text} is outside the project folder {folder}; jobs started from the "
                            "GUI write only there")


def _check_text(name: str, text: str) -> None:
    if any(ch in text for ch in "\n\r\0"):
        raise FormError(f"Error: {name} holds a line break or a NUL character")


def _checked_value(option: dict[str, Any], text: str) -> str:
    """A form value as command-line text: one line, booleans ``true``/``false``. Its type and range are then
    checked by :func:`validate` exactly as the CLI checks them (click's types, then pydantic, which
    also refuses ``inf`` and ``nan``); written as one ``--name=value`` word, it can never become an
    option of its own.

    Raises
    ------
    FormError
        For a line break or NUL character, or a boolean that is not true or false.
    """
    _check_text(f"--{option['name']}", text)
    if option["kind"] == "bool":  # click reads an option-like value of an optional-value flag as an option
        if text.lower() not in ("true", "false"):
            raise FormError(f"Error: Invalid value for '--{option['name']}': {text!r} is not true or false.")
        return text.lower()
    return text


def validate(group: click.Group, argv: list[str]) -> None:
    """Parse ``argv`` with the click command and validate its settings, as the CLI would.

    Raises
    ------
    FormError
        With the line the CLI would print.
    """
    name, args = argv[0], argv[1:]
    command = _command(group, name)
    try:
        with click.Context(group, info_name="isonet-pl", obj={}) as parent:
            ctx = command.make_context(name, list(args), parent=parent)
    except click.ClickException as exc:
        raise FormError(f"Error: {exc.format_message()}") from None
    section = _section(name)
    values = {k: v for k, v in ctx.params.items() if k in section.model_fields}
    try:
        with_overrides(section(), values)
    except IsoNetError as exc:
        raise FormError(f"Error: {exc}") from None

"""Click options generated from the settings models, so every option is defined once.

Each field of a settings section becomes an option spelled both IsoNet's way
(``--pixel_size``) and the dashed way (``--pixel-size``). Options default to None,
meaning "keep the value from the config file or the built-in default".
"""

from __future__ import annotations

from collections.abc import Callable

import click
from pydantic import BaseModel

from isonet_pl.config import OPTION_GROUPS
from isonet_pl.fields import section_fields

_CLICK_TYPES = {"bool": click.BOOL, "int": int, "float": float, "tuple": str, "str": str}


class SettingOption(click.Option):
    """An option made from a setting: both spellings accepted, IsoNet's shown in ``--help``, with its group."""

    def __init__(self, *args, group: str = "Options", **kwargs):
        super().__init__(*args, **kwargs)
        self.group = group

    def get_help_record(self, ctx: click.Context):
        shown, self.opts = self.opts, self.opts[:1]  # --batch_size only (--batch-size still works)
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options under the headings of their groups."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups: dict[str, list] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                groups.setdefault(getattr(param, "group", "Other options"), []).append(record)
        order = [g for section in OPTION_GROUPS.values() for g in section]
        for name in sorted(groups, key=lambda g: order.index(g) if g in order else len(order)):
            with formatter.section(name):
                formatter.write_dl(groups[name])


def _help(spec) -> str:
    """The help of a setting: its description, the choices, and its default ("unset: ..." stays in words)."""
    text = spec.description
    if spec.default is None:
        return text if "unset" in text.lower() else f"{text} [default: unset]"
    return f"{text} [default: {spec.default_text}]"


def section_options(section: type[BaseModel], exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator adding one click option per field of ``section`` (in field order)."""

    def decorator(func: Callable) -> Callable:
        for spec in reversed(section_fields(section)):
            if spec.name in exclude:
                continue
            decls = [f"--{spec.name}"]
            if "_" in spec.name:
                decls.append(f"--{spec.name.replace('_', '-')}")
            kwargs: dict = {"default": None, "type": _CLICK_TYPES[spec.kind], "help": _help(spec),
                            "cls": SettingOption, "group": spec.group}
            if spec.choices:
                kwargs["type"] = click.Choice(spec.choices)
            if spec.kind == "bool":
                # IsoNet style `--use_deconv_tomo False`, or the bare flag for True
                kwargs.update(is_flag=False, flag_value="true", metavar="[BOOL]")
            elif spec.kind == "tuple":
                kwargs.update(metavar="A,B,C")
            func = click.option(*decls, spec.name, **kwargs)(func)
        return func

    return decorator


#: ``--tomo_idx``, shared by every command that walks a tomogram STAR file.
tomo_idx_option = click.option(
    "--tomo_idx", "--tomo-idx", "tomo_idx", default=None, cls=SettingOption, group="Options",
    help="Rows of the STAR file to process, by _rlnIndex, e.g. 1,3-4 [default: all].")

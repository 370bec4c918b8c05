"""Click options generated from the settings models, so every option is defined once.

Each field of a settings section becomes an option spelled both IsoNet's way
(``--pixel_size``) and the dashed way (``--pixel-size``). Options default to None,
meaning "keep the value from the config file or the built-in default".
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable

import click
from pydantic import BaseModel


def _base_type(annotation):
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def _format_default(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def section_options(section: type[BaseModel], exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator adding one click option per field of ``section`` (in field order)."""

    def decorator(func: Callable) -> Callable:
        own = set(section.__annotations__)
        # the section's own fields first, inherited ones (e.g. the tilt range) after
        fields = sorted(section.model_fields.items(), key=lambda item: item[0] not in own)
        for name, field in reversed(fields):
            if name in exclude:
                continue
            decls = [f"--{name}"]
            if "_" in name:
                decls.append(f"--{name.replace('_', '-')}")
            base = _base_type(field.annotation)
            help_text = f"{field.description} [default: {_format_default(field.get_default(call_default_factory=True))}]"
            kwargs: dict = {"default": None, "help": help_text}
            if base is bool:
                # IsoNet style `--use_deconv_tomo False`, or the bare flag for True
                kwargs.update(type=click.BOOL, is_flag=False, flag_value="true", metavar="[BOOL]")
            elif base is int:
                kwargs.update(type=int)
            elif base is float:
                kwargs.update(type=float)
            elif base is tuple:
                kwargs.update(type=str, metavar="A,B,C")
            else:
                kwargs.update(type=str)
            func = click.option(*decls, name, **kwargs)(func)
        return func

    return decorator


#: ``--tomo_idx``, shared by every command that walks a tomogram STAR file.
tomo_idx_option = click.option(
    "--tomo_idx", "--tomo-idx", "tomo_idx", default=None,
    help="Rows of the STAR file to process, by _rlnIndex, e.g. 1,3-4 [default: all].")

"""Click options generated from the settings models, so every option is defined once.

Each field of a settings section becomes an option spelled both IsoNet's way
(``--pixel_size``) and the dashed way (``--pixel-size``). Options default to None,
meaning "keep the value from the config file or the built-in default".
"""

from __future__ import annotations

from collections.abc import Callable

import click
from pydantic import BaseModel

from isonet_pl.fields import section_fields

_CLICK_TYPES = {"bool": click.BOOL, "int": int, "float": float, "tuple": str, "str": str}


def section_options(section: type[BaseModel], exclude: tuple[str, ...] = ()) -> Callable:
    """Decorator adding one click option per field of ``section`` (in field order)."""

    def decorator(func: Callable) -> Callable:
        for spec in reversed(section_fields(section)):
            if spec.name in exclude:
                continue
            decls = [f"--{spec.name}"]
            if "_" in spec.name:
                decls.append(f"--{spec.name.replace('_', '-')}")
            kwargs: dict = {"default": None, "type": _CLICK_TYPES[spec.kind],
                            "help": f"{spec.description} [default: {spec.default_text}]"}
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
    "--tomo_idx", "--tomo-idx", "tomo_idx", default=None,
    help="Rows of the STAR file to process, by _rlnIndex, e.g. 1,3-4 [default: all].")

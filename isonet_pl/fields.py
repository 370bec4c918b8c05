"""The fields of a settings section as front ends show them (CLI options, GUI forms).

Both the click options (``isonet_pl.cli.options``) and the GUI's forms
(``isonet_pl.gui.forms``) are built from :func:`section_fields`, so a setting's type,
default, choices and help are read from its pydantic model in one place.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class FieldSpec:
    """One setting of a section.

    Attributes
    ----------
    name : str
        The field's name, which is also the option's name (``--pixel_size``).
    kind : str
        ``"bool"``, ``"int"``, ``"float"``, ``"tuple"`` (comma-separated values) or ``"str"``.
    default : object
        The default value (``None``: unset).
    description : str
        The help text.
    choices : tuple of str or None
        The allowed values of a ``Literal`` field.
    nullable : bool
        Whether the field may be left unset (``None``).
    group : str
        Where ``--help`` and the GUI show it (:data:`isonet_pl.config.OPTION_GROUPS`).
    """

    name: str
    kind: str
    default: object
    description: str
    choices: tuple[str, ...] | None
    nullable: bool
    group: str = "Options"

    @property
    def default_text(self) -> str:
        """The default as written on a command line (``64,64,64`` for tuples, ``None`` when unset)."""
        return format_value(self.default)


def format_value(value: object) -> str:
    """A setting's value as typed on the command line (tuples comma-separated)."""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _unwrap(annotation) -> tuple[object, bool]:
    """The annotation without ``| None``, and whether None was allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0])[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _kind(annotation) -> tuple[str, tuple[str, ...] | None]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "str", tuple(str(a) for a in typing.get_args(annotation))
    base = origin or annotation
    names = {bool: "bool", int: "int", float: "float", tuple: "tuple"}
    return names.get(base, "str"), None


def section_fields(section: type[BaseModel]) -> list[FieldSpec]:
    """The fields of ``section``: its own first, inherited ones (e.g. the tilt range) after."""
    from isonet_pl.config import option_group

    own = set(section.__annotations__)
    items = sorted(section.model_fields.items(), key=lambda item: item[0] not in own)
    specs = []
    for name, info in items:
        annotation, nullable = _unwrap(info.annotation)
        kind, choices = _kind(annotation)
        specs.append(FieldSpec(name=name, kind=kind, default=info.get_default(call_default_factory=True),
                               description=info.description or "", choices=choices, nullable=nullable,
                               group=option_group(section, name)))
    return specs

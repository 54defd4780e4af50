"""How a training config says what is wrong with it: in one line that names the field, and, for a
field that an older aolo had and this one removed, whether the old value can still be read.

Removed fields (their results stay in docs/model.md) still appear in the ``config.json`` of older
run directories and in the policy arguments SB3 saved in their ``model.zip``. A removed field at
the one value this version reproduces is dropped silently, so those runs load for export,
evaluation and comparison; any other value is refused, because this version would train or read
that run differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["drop_removed_fields", "one_line", "RemovedFieldError"]


class RemovedFieldError(ValueError):
    """A config sets a removed field to a value other than the one this version reproduces."""


def drop_removed_fields(data: Any, removed: Mapping[str, Any], owner: str) -> Any:
    """``data`` without the removed fields that hold their reproduced value.

    :param data: the raw input of a config model (a dict; anything else is returned as is)
    :param removed: removed field name -> the value this version reproduces
    :param owner: the config's name, for the message
    :raises RemovedFieldError: a removed field holds another value (names the field and value)
    """
    if not isinstance(data, Mapping):
        return data
    kept = dict(data)
    for name, reproduced in removed.items():
        if name in kept and kept.pop(name) != reproduced:
            raise RemovedFieldError(f"{owner}.{name} = {data[name]!r}: this field was removed (docs/model.md "
                                    f"keeps its results); only {reproduced!r} can be read")
    return kept


def one_line(error: ValidationError, source: str) -> str:
    """The first error of a pydantic validation as ``<source>: field '<a.b>': <message>``."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{source}: field '{where}': {message}" if where else f"{source}: {message}"

"""JSON Schema (draft 2020-12) from dataclasses, so a published record and its schema file cannot drift.

A field's type hint gives its JSON type (``int`` → integer, ``float`` → number, ``X | None`` → ``[X, "null"]``,
``tuple[X, ...]`` / ``list[X]`` → array, a dataclass → a closed object); ``field(metadata=schema(...))`` adds
keywords such as ``description``, ``minimum``, ``enum`` or ``format``. Every field is required and no other
property is allowed: consumers can rely on exactly the fields the dataclass declares.

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Point:
...     x: int = field(metadata=schema(minimum=0))
...     label: str | None
>>> object_schema(Point)["properties"]
{'x': {'type': 'integer', 'minimum': 0}, 'label': {'type': ['string', 'null']}}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

__all__ = ["schema", "object_schema", "document_schema"]

_SCHEMA_KEY = "json_schema"
_SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}


def schema(**keywords: Any) -> dict[str, Any]:
    """Field metadata carrying extra JSON Schema keywords: ``field(metadata=schema(minimum=1))``."""
    return {_SCHEMA_KEY: keywords}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1 or options[0] not in _SCALARS:
            raise TypeError(f"only `scalar | None` unions are supported, got {hint}")
        return {"type": [_SCALARS[options[0]], "null"]}
    if origin in (list, tuple):
        element = args[0] if args else Any
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"only tuple[X, ...] is supported, got {hint}")
        return {"type": "array", "items": _type_schema(element)}
    if dataclasses.is_dataclass(hint):
        return object_schema(hint)
    raise TypeError(f"no JSON Schema type for {hint!r}")


def object_schema(cls: type) -> dict[str, Any]:
    """A closed object: every dataclass field required, nothing else allowed."""
    hints = typing.get_type_hints(cls)
    properties = {f.name: {**_type_schema(hints[f.name]), **f.metadata.get(_SCHEMA_KEY, {})}
                  for f in dataclasses.fields(cls)}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def document_schema(cls: type, schema_id: str, title: str) -> dict[str, Any]:
    """The schema file of a top-level record: ``$schema``, ``$id`` and ``title`` before the object schema."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title,
            **object_schema(cls)}

"""A JSON description of every pallet: calls, storage, events and errors (state_getMetadata)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from runtime.dispatch import PALLETS


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        args = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        origin = typing.get_origin(tp)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _fields(cls: type) -> list[dict[str, str]]:
    hints = typing.get_type_hints(cls)
    return [{"name": f.name, "type": type_name(hints[f.name])} for f in dataclasses.fields(cls)]


def _describe_pallet(pallet) -> dict[str, Any]:
    return {
        "index": pallet.index,
        "name": pallet.name,
        "doc": pallet.doc,
        "calls": [
            {
                "index": c.index,
                "name": c.name,
                "args": [{"name": n, "type": type_name(t)} for n, t in c.params],
                "origin": c.origin,
                "weight": c.weight if isinstance(c.weight, int) else "depends on the arguments",
                "doc": c.doc,
            }
            for c in sorted(pallet.calls.values(), key=lambda c: c.index)
        ],
        "storage": [
            {
                "name": item.name,
                "kind": item.kind,
                "key_type": type_name(item.key_type) if item.kind == "map" else None,
                "value_type": type_name(item.value_type),
                "prefix": "0x" + (item.prefix if item.kind == "map" else item.key).hex(),
                "doc": item.doc,
            }
            for item in pallet.storage
        ],
        "events": [
            {"index": i, "name": cls.__name__, "fields": _fields(cls), "doc": (cls.__doc__ or "").strip()}
            for i, cls in sorted(pallet.events.items())
        ],
        "errors": [
            {"index": i, "name": cls.__name__, "doc": (cls.__doc__ or "").strip()}
            for i, cls in sorted(pallet.errors.items())
        ],
    }


def build_metadata(version) -> dict[str, Any]:
    return {
        "version": dataclasses.asdict(version),
        "pallets": [_describe_pallet(PALLETS[i]) for i in sorted(PALLETS)],
    }

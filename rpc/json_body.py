"""Parsing a JSON-RPC body strictly: bad input is refused before any handler sees it.

Invalid UTF-8, NaN/Infinity, duplicate object keys, nesting deeper than MAX_NESTING and
numbers over MAX_NUMBER_DIGITS digits raise JsonParseError (the server answers -32700).
The nesting scan runs only when the body has enough brackets to be too deep, so an
ordinary request pays nothing for it.
"""

from __future__ import annotations

import json
from typing import Any

MAX_NESTING = 32
MAX_NUMBER_DIGITS = 80


class JsonParseError(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise JsonParseError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonParseError("duplicate key in object")
    return result


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise JsonParseError("number too long")
    return int(text)


def _check_nesting(text: str) -> None:
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise JsonParseError(f"nesting deeper than {MAX_NESTING}")
        elif char in "]}":
            depth -= 1


def parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonParseError("body is not UTF-8") from None
    if body.count(b"[") + body.count(b"{") > MAX_NESTING:  # only then can nesting be too deep
        _check_nesting(text)
    try:
        return _DECODER.decode(text)
    except JsonParseError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JsonParseError(str(exc)) from None


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise JsonParseError("number too long")
    return float(text)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys,
                            parse_int=_parse_int, parse_float=_parse_float)

"""JSON text that a client sends outside FastAPI's own body parsing (the `/separate` body, a form's
`params` part), parsed with its nesting bounded.

Python's parser recurses once per level: ten thousand `[` raised RecursionError, which no handler
expected (a 500 and a dropped connection). Nothing this API takes is nested more than a few levels, so
anything deeper than :data:`MAX_JSON_DEPTH` is refused as the client's error.
"""

from __future__ import annotations

import json

MAX_JSON_DEPTH = 32
"""Arrays and objects inside one another, at most (the deepest request the API takes has 3)."""


class JsonTooDeepError(ValueError):
    """The JSON text nests arrays and objects more than MAX_JSON_DEPTH deep."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")


def loads_bounded(text: str | bytes | bytearray) -> object:
    """``json.loads(text)``; ValueError when it is not JSON, :class:`JsonTooDeepError` (a ValueError too)
    when it nests deeper than MAX_JSON_DEPTH."""
    try:
        data: object = json.loads(text)
    except RecursionError as error:
        raise JsonTooDeepError from error
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise JsonTooDeepError
    return data


def _depth_exceeds(data: object, limit: int) -> bool:
    """Whether ``data`` nests containers more than ``limit`` deep (iterative: no recursion to run out of)."""
    stack: list[tuple[object, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: list[object] = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

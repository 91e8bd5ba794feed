"""`/k/<key>/<path>`: the key moves into X-API-Key and out of the path (so that no log line sees it)."""

from __future__ import annotations

from typing import Any

from soundstage_api.key_path import strip_key


def _scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "path": path, "raw_path": path.encode(), "headers": headers or []}


def test_the_key_moves_from_the_path_into_the_header() -> None:
    scope = strip_key(_scope("/k/alice-key/magenta/jam/next", [(b"host", b"x"), (b"x-api-key", b"other")]))
    assert scope["path"] == "/magenta/jam/next" and scope["raw_path"] == b"/magenta/jam/next"
    assert scope["headers"] == [(b"host", b"x"), (b"x-api-key", b"alice-key")]  # the path's key wins


def test_percent_encoded_keys_and_the_bare_prefix() -> None:
    assert dict(strip_key(_scope("/k/a%2Bb/health"))["headers"])[b"x-api-key"] == b"a+b"
    assert strip_key(_scope("/k/key"))["path"] == "/"
    untouched = _scope("/k//health")
    assert strip_key(untouched) == untouched


def test_a_key_in_a_path_is_redacted_from_every_log_line(capsys: Any) -> None:
    import logging

    from soundstage.logs import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/k/alice-key/ws/jam")
        logging.getLogger("x").warning("GET /k/bob-key/magenta/health")
        err = capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "alice-key" not in err and "bob-key" not in err
    assert '"WebSocket /k/<redacted>/ws/jam" [accepted]' in err and "GET /k/<redacted>/magenta/health" in err

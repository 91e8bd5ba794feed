"""Logging set-up shared by every process: text for humans, JSON in production, the request id and the
job id on every line (``-`` where there is none).

The request id is the API request's ``X-Request-ID`` (soundstage_api.request_id); it travels with the
job's task message (soundstage.queue.enqueue_job) so that the worker's lines for that job carry it too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("soundstage_job_id", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("soundstage_request_id", default=None)


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with `job_id`."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Tag every log line emitted inside the block with ``request_id`` (None: leave it as it is)."""
    if request_id is None:
        yield
        return
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def current_request_id() -> str | None:
    return _request_id.get()


KEY_IN_PATH = re.compile(r"/k/[^/\s\"'?]+")
"""A per-key path prefix (soundstage_api.key_path): its key is redacted from every line, whoever logs it
(uvicorn logs a WebSocket's path as the client sent it, before the app sees it)."""


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get() or "-"
        record.request_id = _request_id.get() or "-"
        if "/k/" in str(record.msg) or any("/k/" in str(arg) for arg in _args(record)):
            record.msg = KEY_IN_PATH.sub("/k/<redacted>", record.getMessage())
            record.args = ()
        return True


def _args(record: logging.LogRecord) -> tuple[object, ...]:
    args = record.args
    if isinstance(args, tuple):
        return args
    return tuple(args.values()) if isinstance(args, dict) else ()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "job_id": getattr(record, "job_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [req=%(request_id)s job=%(job_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

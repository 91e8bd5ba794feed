"""Audio inputs of a request, on disk before any job exists: an uploaded file part, or a URL.

`receive_form` reads a `multipart/form-data` request with one file part (and, for a route that takes
several files, any number of parts of its `repeated_file_fields`, each to its own file), streaming the file
to a temporary file and enforcing the size cap as the bytes arrive. Starlette's own form
parser spools a whole upload before the route runs, so a 5 GB upload would be on disk
before anyone could refuse it. Here the cap is checked on every chunk (and on
`Content-Length` first, when the client sends one), the file part goes to disk in 1 MiB
writes made in a worker thread, and the text parts are held in memory with their own small
caps. `parse_form_parameters` turns the text parts into a request model. `receive_fields_or_form` also
takes an `application/x-www-form-urlencoded` body (what `requests.post(url, data={...})` sends when
there is no file), read up to MAX_FIELD_BYTES.

`fetched_url` fetches a URL a client named into a temporary file with
:mod:`soundstage.fetch` (address checks, size cap, deadline); a URL that names one of this
server's own files is read straight from storage instead (:mod:`soundstage_api.own_files`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from soundstage.errors import AppError, ErrorCode
from soundstage.fetch import FetchedFile, fetch_to_file_async
from soundstage.settings import Settings
from soundstage_api.json_text import JsonTooDeepError, loads_bounded
from soundstage_api.own_files import copy_own_file, current_own_files, own_file_name

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

WRITE_CHUNK_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 64
FORM_OVERHEAD_BYTES = 1024 * 1024
"""Bytes allowed on top of the file cap for the text parts and the multipart framing."""
MAX_REPEATED_FILES = 16
"""Most parts of a repeated file field (a blend's audio prompts)."""
PARAMS_PART = "params"
"""The optional part that holds every parameter as one JSON object, instead of form fields."""

RequestModel = TypeVar("RequestModel", bound=BaseModel)


@dataclass(frozen=True)
class ReceivedFile:
    """One file part of a repeated file field, on disk (removed when the form's context ends)."""

    field: str
    path: Path
    size: int
    filename: str | None


@dataclass
class ReceivedForm:
    """The parts of a multipart request: text fields by name, and the file part on disk."""

    fields: dict[str, str]
    file_path: Path
    file_received: bool
    file_size: int
    filename: str | None
    files: list[ReceivedFile] = field(default_factory=list)
    """The parts of the repeated file fields, in the order they came."""


def form_error(message: str, loc: list[str] | None = None, kind: str = "value_error") -> AppError:
    """A 422 `validation_error` shaped like the ones FastAPI's own validation produces."""
    return AppError(
        ErrorCode.VALIDATION_ERROR,
        f"Invalid request: {message}",
        status_code=422,
        details=[{"loc": loc or ["body"], "msg": message, "type": kind}],
    )


def too_large(max_bytes: int) -> AppError:
    mib = max_bytes / (1024 * 1024)
    return AppError(
        ErrorCode.UPLOAD_TOO_LARGE,
        f"The upload is larger than {mib:g} MiB (MAX_UPLOAD_MB).",
        status_code=413,
        details={"max_bytes": max_bytes},
    )


@dataclass
class _Spool:
    """A repeated file part being written: its file, and the bytes not written yet."""

    part_name: str
    filename: str | None
    path: Path
    handle: BinaryIO
    size: int = 0
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False
    """Its part is over: closed at the next flush, so a request holds few files open at once."""


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    is_file: bool = False
    spool: _Spool | None = None
    data: bytearray = field(default_factory=bytearray)
    disposition: bytes = b""
    header_name: bytes = b""
    header_value: bytes = b""


class _FormReader:
    """python-multipart callbacks; file bytes are queued in `pending` for the async loop to write."""

    def __init__(
        self, file_field: str, max_file_bytes: int, repeated_file_fields: frozenset[str] = frozenset()
    ) -> None:
        self.file_field = file_field
        self.repeated_file_fields = repeated_file_fields
        self.spools: list[_Spool] = []
        self.max_file_bytes = max_file_bytes  # all file parts together
        self.fields: dict[str, str] = {}
        self.file_received = False
        self.file_size = 0
        self.filename: str | None = None
        self.pending = bytearray()
        self.parts = 0
        self.ended = False
        self.part = _Part()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise form_error(f"too many parts (at most {MAX_PARTS}).")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.part.header_name.strip().lower() == b"content-disposition":
            self.part.disposition = self.part.header_value
        self.part.header_name = self.part.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.disposition)
        if b"name" not in options:
            raise form_error("a multipart part has no name (Content-Disposition: form-data; name=...).")
        name = options[b"name"].decode("utf-8", errors="replace")
        if name in self.fields or (name == self.file_field and self.file_received):
            raise form_error(f"the part `{name}` is given more than once.", ["body", name])
        self.part.name = name
        if name in self.repeated_file_fields:
            if len(self.spools) >= MAX_REPEATED_FILES:
                raise form_error(f"at most {MAX_REPEATED_FILES} files in `{name}`.", ["body", name])
            raw_name = options.get(b"filename")
            # A blocking call in the parser's callback, but a local mkstemp is microseconds.
            descriptor, temporary = tempfile.mkstemp(prefix="soundstage-upload-")
            self.part.spool = _Spool(
                part_name=name,
                filename=raw_name.decode("utf-8", errors="replace") if raw_name is not None else None,
                path=Path(temporary),
                handle=os.fdopen(descriptor, "wb"),
            )
            self.spools.append(self.part.spool)
            return
        self.part.is_file = name == self.file_field
        if self.part.is_file:
            self.file_received = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", errors="replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        if self.part.spool is not None:
            self.file_size += size
            if self.file_size > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            self.part.spool.size += size
            self.part.spool.pending += data[start:end]
            return
        if self.part.is_file:
            self.file_size += size
            if self.file_size > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            self.pending += data[start:end]
            return
        if len(self.part.data) + size > MAX_FIELD_BYTES:
            raise form_error(f"the part `{self.part.name}` is longer than {MAX_FIELD_BYTES // 1024} KiB.")
        self.part.data += data[start:end]

    def on_part_end(self) -> None:
        if self.part.spool is not None:
            self.part.spool.ended = True
            return
        if not self.part.is_file:
            self.fields[self.part.name] = self.part.data.decode("utf-8", errors="replace")

    def on_end(self) -> None:
        self.ended = True


@contextlib.asynccontextmanager
async def receive_form(
    request: Request, *, file_field: str, max_file_bytes: int, repeated_file_fields: frozenset[str] = frozenset()
) -> AsyncIterator[ReceivedForm]:
    """Read the whole request; yields the form with the file part in a temporary file that is
    removed on exit (and each part of ``repeated_file_fields`` in its own). 413 `upload_too_large` as
    soon as the file parts together pass `max_file_bytes`; 422 `validation_error` for a body that is
    not well-formed multipart."""
    boundary = _boundary(request)
    max_body = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise too_large(max_file_bytes)
    reader = _FormReader(file_field, max_file_bytes, repeated_file_fields)
    descriptor, name = await run_in_threadpool(tempfile.mkstemp, prefix="soundstage-upload-")
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as sink:
            await _read_body(request, reader, MultipartParser(boundary, reader.callbacks()), sink, max_body)
        await run_in_threadpool(_close_spools, reader.spools)
        yield ReceivedForm(
            fields=reader.fields,
            file_path=path,
            file_received=reader.file_received,
            file_size=reader.file_size - sum(spool.size for spool in reader.spools),
            filename=reader.filename,
            files=[ReceivedFile(s.part_name, s.path, s.size, s.filename) for s in reader.spools],
        )
    finally:
        await run_in_threadpool(_remove, [path, *(spool.path for spool in reader.spools)], reader.spools)


URLENCODED = b"application/x-www-form-urlencoded"


@contextlib.asynccontextmanager
async def receive_fields_or_form(
    request: Request, *, file_field: str, max_file_bytes: int, repeated_file_fields: frozenset[str] = frozenset()
) -> AsyncIterator[ReceivedForm]:
    """`receive_form` for a multipart body; for a urlencoded one, its fields (no file part: `file_received`
    false). 413 past MAX_FIELD_BYTES of urlencoded text; 422 for a body of any other type."""
    media_type, _ = parse_options_header(request.headers.get("content-type"))
    if media_type != URLENCODED:
        async with receive_form(
            request, file_field=file_field, max_file_bytes=max_file_bytes, repeated_file_fields=repeated_file_fields
        ) as form:
            yield form
        return
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FIELD_BYTES:
        raise _fields_too_large()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FIELD_BYTES:
            raise _fields_too_large()
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as error:
        raise form_error("the body is not well-formed application/x-www-form-urlencoded.") from error
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise form_error(f"the field `{name}` is given more than once.", ["body", name])
        fields[name] = value
    yield ReceivedForm(fields=fields, file_path=Path(os.devnull), file_received=False, file_size=0, filename=None)


def _fields_too_large() -> AppError:
    return AppError(
        ErrorCode.BODY_TOO_LARGE,
        f"A form without a file holds at most {MAX_FIELD_BYTES // 1024} KiB of fields.",
        status_code=413,
        details={"max_bytes": MAX_FIELD_BYTES},
    )


async def _read_body(
    request: Request, reader: _FormReader, parser: MultipartParser, sink: BinaryIO, max_body: int
) -> None:
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise too_large(reader.max_file_bytes)
            parser.write(chunk)
            spooled = sum(len(spool.pending) for spool in reader.spools)
            ended = any(spool.ended and not spool.handle.closed for spool in reader.spools)
            if len(reader.pending) + spooled >= WRITE_CHUNK_BYTES or ended:
                await _flush(reader, sink)
        parser.finalize()
    except FormParserError as error:
        raise form_error("the body is not well-formed multipart/form-data.") from error
    if not reader.ended:
        raise form_error("the multipart body ended before its closing boundary.")
    await _flush(reader, sink)


async def _flush(reader: _FormReader, sink: BinaryIO) -> None:
    data = bytes(reader.pending)
    reader.pending.clear()
    await run_in_threadpool(sink.write, data)
    for spool in reader.spools:
        if spool.pending:
            spooled = bytes(spool.pending)
            spool.pending.clear()
            await run_in_threadpool(spool.handle.write, spooled)
        if spool.ended and not spool.handle.closed:
            await run_in_threadpool(spool.handle.close)


def _close_spools(spools: list[_Spool]) -> None:
    for spool in spools:
        if not spool.handle.closed:
            spool.handle.close()


def _remove(paths: list[Path], spools: list[_Spool]) -> None:
    _close_spools(spools)  # a refused body leaves them open
    for path in paths:
        path.unlink(missing_ok=True)


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise form_error(
            "send multipart/form-data (an `audio_file` part plus form fields or a `params` JSON part).",
            kind="content_type",
        )
    return options[b"boundary"]


def parse_form_parameters(
    fields: dict[str, str], model: type[RequestModel], *, file_field: str | None, file_received: bool
) -> RequestModel:
    """The request from form fields (an empty field counts as not sent) or from one `params` JSON
    part; 422 with every invalid field, and with `file_field` when the file part is missing (None: the
    form needs no file)."""
    if PARAMS_PART in fields:
        others = sorted(set(fields) - {PARAMS_PART})
        if others:
            raise form_error(
                f"send the parameters either as form fields or as one `params` JSON part, not both "
                f"(also got: {', '.join(others)}).",
                ["body", PARAMS_PART],
            )
        data = _params_object(fields[PARAMS_PART])
        prefix: list[str | int] = ["body", PARAMS_PART]
    else:
        data = {name: value for name, value in fields.items() if value != ""}
        prefix = ["body"]
    errors: list[dict[str, Any]] = []
    body = None
    try:
        body = model.model_validate(data)
    except ValidationError as error:
        errors = [{"loc": [*prefix, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    if file_field is not None and not file_received:
        errors.append({"loc": ["body", file_field], "msg": "Field required", "type": "missing"})
    if errors or body is None:
        raise RequestValidationError(errors)
    return body


def _params_object(text: str) -> dict[str, Any]:
    try:
        data = loads_bounded(text)
    except JsonTooDeepError as error:
        raise form_error(f"the `params` part {error}.", ["body", PARAMS_PART], "json_too_deep") from error
    except ValueError as error:
        raise form_error("the `params` part is not valid JSON.", ["body", PARAMS_PART], "json_invalid") from error
    if not isinstance(data, dict):
        raise form_error("the `params` part must be a JSON object.", ["body", PARAMS_PART], "dict_type")
    return data


def multipart_body_schema(
    model: type[BaseModel], *, file_field: str, file_description: str, exclude: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The multipart body as OpenAPI shows it (the routes read the stream themselves): the file
    part, the `params` part and the fields of `model` but those in `exclude`."""
    fields = model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    properties = {
        file_field: {"type": "string", "format": "binary", "description": file_description},
        PARAMS_PART: {
            "type": "string",
            "description": "Alternatively, all the other fields as one JSON object (not together with form fields).",
        },
        **{name: schema for name, schema in fields.items() if name not in exclude},
    }
    schema = {"type": "object", "required": [file_field], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


@contextlib.asynccontextmanager
async def fetched_url(url: str, settings: Settings) -> AsyncIterator[FetchedFile]:
    """Fetch `url` into a temporary file (removed on exit) under the upload rules: at most
    MAX_UPLOAD_MB, within FETCH_TIMEOUT_SECONDS, public addresses only unless
    ALLOW_PRIVATE_URLS. Raises the `url_*` errors of :func:`soundstage.fetch.fetch_to_file_async`.
    The fetch runs on the event loop (httpx's async client), so no thread waits on the network.

    A URL naming one of this server's own files (see :mod:`soundstage_api.own_files`) is copied from storage
    instead: 422 `url_fetch_failed` with `details.status` 404 for an unknown or invalid name (as a
    remote 404), 413 `url_too_large` past MAX_UPLOAD_MB."""
    descriptor, name = await run_in_threadpool(tempfile.mkstemp, prefix="soundstage-fetch-")
    os.close(descriptor)
    path = Path(name)
    own = current_own_files()
    own_name = own_file_name(url, own.base_urls) if own is not None else None
    try:
        if own is not None and own_name is not None:
            yield await run_in_threadpool(copy_own_file, own, own_name, url, path, settings.max_upload_bytes)
        else:
            yield await fetch_to_file_async(
                url,
                path,
                max_bytes=settings.max_upload_bytes,
                timeout_s=settings.fetch_timeout_seconds,
                allow_private=settings.allow_private_urls,
            )
    finally:
        await run_in_threadpool(path.unlink, True)

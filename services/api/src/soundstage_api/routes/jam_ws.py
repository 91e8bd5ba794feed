"""The jam WebSocket, `/ws/jam` and `/magenta/ws/jam` (the MagentaRT Research API's protocol,
soundstage.schemas.jam_ws): the socket's relay between its client and the worker holding its session.

One socket holds at most one session at a time (a new `start` after `stopped` starts another). The relay
forwards the session's events as they come (chunks as base64 WAV, or with `binary_audio` a binary WAV frame
then `chunk_meta`), marks each chunk sent as delivered (the worker's window moves with it until the client
sends its own `consume`), and keeps the session's client lease alive while the socket is open. When the
socket closes, its session is stopped at once; if this API process dies instead, the lease lapses within
SOCKET_LEASE_SECONDS and the worker ends it. A worker that dies ends the session with an `error` event
(`worker_lost`) and `stopped`.

Nothing a client sends closes the socket or reaches the worker unchecked: a binary frame, malformed JSON,
an unknown type or field, a message over MAX_MESSAGE_BYTES, `update` before `start`, another key's
`session_id` are each answered with an `error` event and the socket goes on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from soundstage import jam_bus
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.jam import JamOptions
from soundstage.schemas.jam_stream import (
    ChunkEvent,
    Consumption,
    ErrorEvent,
    ReseedControl,
    StatusEvent,
    StoppedEvent,
)
from soundstage.schemas.jam_ws import (
    CLIENT,
    SERVER,
    ChunkMessage,
    ChunkMeta,
    ConsumeMessage,
    PingMessage,
    Pong,
    ReseedMessage,
    ServerMessage,
    Started,
    StartMessage,
    StopMessage,
    UpdateMessage,
)
from soundstage_api.auth import authenticate_socket
from soundstage_api.jam_requests import begin, prepare_start, store_upload, update_control
from soundstage_api.jam_sessions import SessionRecord
from soundstage_api.state import AppState
from soundstage_api.viewer import current as current_viewer

logger = logging.getLogger(__name__)

router = APIRouter(tags=["magenta jam"])

MAX_MESSAGE_BYTES = 24 * 1024 * 1024
"""Largest client message read (a 60 s loop as base64 WAV is about 15 MB); larger ones get an error event.
(The server's own frame limit, above this, closes the socket with 1009 for anything larger still.)"""
WS_MAX_FRAME_BYTES = 32 * 1024 * 1024
"""The server's frame limit (uvicorn's `ws_max_size`): a frame larger still closes the socket (1009)."""
SOCKET_LEASE_SECONDS = 10.0
STOP_WAIT_SECONDS = 5.0
"""How long a `stop` waits for the worker's `stopped` before answering with its own."""
LEASE_REFRESH_SECONDS = 2.0


@router.websocket("/ws/jam")
@router.websocket("/magenta/ws/jam")
async def jam_socket(websocket: WebSocket) -> None:
    state: AppState = websocket.app.state.soundstage
    await websocket.accept()
    refused = await authenticate_socket(websocket.headers, state)
    relay = SocketRelay(websocket, state)
    if refused is not None:
        await relay.send(ErrorEvent(code=refused.code.value, message=refused.message, fatal=True))
        await websocket.close(code=1008)
        return
    await relay.run()


class SocketRelay:
    def __init__(self, websocket: WebSocket, state: AppState) -> None:
        self._socket = websocket
        self._state = state
        self._send_lock = asyncio.Lock()
        self._session: str | None = None
        self._binary = False
        self._forward: asyncio.Task[None] | None = None

    async def run(self) -> None:
        lease = asyncio.create_task(self._keep_lease())
        try:
            while True:
                message = await self._socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message)
        except WebSocketDisconnect:
            pass
        finally:
            lease.cancel()
            await self._end("the client disconnected")

    async def send(self, message: ServerMessage) -> None:
        async with self._send_lock:
            await self._socket.send_text(SERVER.dump_json(message).decode())

    async def _error(self, code: ErrorCode | str, message: str, *, fatal: bool = False) -> None:
        await self.send(ErrorEvent(code=str(code), message=message, fatal=fatal))

    # -- the client's messages ------------------------------------------------------------------------------

    async def _handle(self, raw: Mapping[str, object]) -> None:
        text = raw.get("text")
        if not isinstance(text, str):
            await self._error(ErrorCode.BAD_MESSAGE, "Send JSON text messages; binary frames are not read.")
            return
        if len(text) > MAX_MESSAGE_BYTES:
            await self._error(ErrorCode.BODY_TOO_LARGE, f"Messages are at most {MAX_MESSAGE_BYTES} bytes.")
            return
        try:
            # A loop of megabytes is parsed off the event loop (other sockets keep streaming meanwhile).
            message = (
                CLIENT.validate_json(text) if len(text) < 65536 else await asyncio.to_thread(CLIENT.validate_json, text)
            )
        except ValidationError as error:
            await self._error(ErrorCode.BAD_MESSAGE, _describe(error))
            return
        try:
            await self._dispatch(message)
        except AppError as error:
            await self._error(error.code, error.message)
        except Exception:
            logger.exception("jam socket: a %s message failed", getattr(message, "type", "?"))
            await self._error(ErrorCode.INTERNAL_ERROR, "The message could not be handled; try again.")

    async def _dispatch(self, message: object) -> None:
        if isinstance(message, PingMessage):
            await self.send(Pong(t=message.t, server_time=time.time()))
        elif isinstance(message, StartMessage):
            await self._start(message)
        elif self._session is None:
            raise AppError(ErrorCode.SESSION_NOT_STARTED, "Send `start` first.", status_code=409)
        elif isinstance(message, StopMessage):
            await self._end("stopped by the client")
        elif isinstance(message, UpdateMessage):
            record = await self._record()
            control = await update_control(self._state, record, message, styles_sent=message.styles is not None)
            await self._state.jams.send(self._session, control)
        elif isinstance(message, ConsumeMessage):
            await self._state.jams.consume(await self._record(), message.chunk_index)
        elif isinstance(message, ReseedMessage):
            name = None
            if message.loop_audio_b64 is not None:
                async with _decoded_file(message.loop_audio_b64) as path:
                    if path is None:  # never: the audio was given
                        return
                    stem = f"jam-{self._session}_reseed-{os.urandom(4).hex()}"
                    name = await store_upload(self._state, path, stem, "loop_audio_b64")
            await self._state.jams.send(self._session, ReseedControl(audio=name, seed=message.seed))

    async def _record(self) -> SessionRecord:
        record = None if self._session is None else await self._state.jams.record(self._session)
        if record is None or record.ended:
            raise AppError(ErrorCode.SESSION_ENDED, "The session has ended; send `start` again.", status_code=404)
        return record

    async def _start(self, message: StartMessage) -> None:
        if self._session is not None:
            raise AppError(
                ErrorCode.VALIDATION_ERROR, "A session is running on this socket: `stop` it first.", status_code=409
            )
        self._binary = message.binary_audio
        if message.session_id is not None:
            await self._attach(message.session_id)
            return
        options = _options(message)
        async with _decoded_file(message.loop_audio_b64) as loop:
            start = await prepare_start(
                self._state,
                options,
                loop=loop,
                pace=message.params.pace,
                consumption=Consumption.DELIVERED,
                style_ramp_seconds=message.params.style_ramp_seconds or 0.0,
            )
        started = await begin(self._state, start)
        await self._state.jams.touch(start.session_id, SOCKET_LEASE_SECONDS)
        self._session = start.session_id
        params = start.params
        await self.send(
            Started(
                session_id=start.session_id,
                mode=message.mode,
                binary_audio=self._binary,
                pace=message.params.pace,
                model=started.model,
                random_weights=started.random_weights,
                checkpoint=started.checkpoint,
                steering_assets=started.steering_assets,
                bpm=params.bpm,
                bars_per_chunk=params.bars_per_chunk,
                beats_per_bar=params.beats_per_bar,
                chunk_duration_seconds=params.chunk_seconds,
                sample_rate=params.target_sample_rate,
                seed=params.seed,
                started_in_seconds=started.started_in_seconds,
            )
        )
        self._forward = asyncio.create_task(self._relay(start.session_id, "0-0"))

    async def _attach(self, session_id: str) -> None:
        """Relay a session started over HTTP (bar mode with its `session_id`), from the next chunk on."""
        record = await self._state.jams.record(session_id)
        if record is None or not current_viewer().may_see(record.owner):
            raise AppError(ErrorCode.SESSION_NOT_FOUND, f"No jam session {session_id!r}.", status_code=404)
        if record.ended:
            raise AppError(ErrorCode.SESSION_ENDED, "That session has ended.", status_code=404)
        self._session = session_id  # its consumption stays explicit, as its HTTP client started it
        delivered = record.index("delivered")
        after = jam_bus.last_id_of(delivered) if delivered else "0-0"
        self._forward = asyncio.create_task(self._relay(session_id, after))

    # -- the session's events -------------------------------------------------------------------------------

    async def _relay(self, session_id: str, after: str) -> None:
        try:
            async for entry in self._state.jams.follow(session_id, after, deadline=float("inf")):
                event = entry.event
                if isinstance(event, ChunkEvent) and entry.audio is not None:
                    await self._send_chunk(event, entry.audio)
                    await self._state.jams.mark_delivered(session_id, event.index)
                elif isinstance(event, StatusEvent | ErrorEvent):
                    await self.send(event)
                elif isinstance(event, StoppedEvent):
                    await self.send(event)
                    break
        except (WebSocketDisconnect, RuntimeError):
            return  # the socket closed under us: run() ends the session
        except Exception:
            logger.exception("jam %s: relaying failed", session_id)
            with contextlib.suppress(Exception):
                await self._state.jams.stop(session_id, "its stream could not be relayed")
            with contextlib.suppress(Exception):
                await self._error(ErrorCode.INTERNAL_ERROR, "The stream could not be relayed.", fatal=True)
        if self._session == session_id:
            self._session = None

    async def _send_chunk(self, event: ChunkEvent, audio: bytes) -> None:
        if self._binary:
            meta = ChunkMeta(
                index=event.index, metadata=event.metadata, lateness_seconds=event.lateness_seconds, bytes=len(audio)
            )
            async with self._send_lock:  # the frame and its chunk_meta, with nothing between them
                await self._socket.send_bytes(audio)
                await self._socket.send_text(SERVER.dump_json(meta).decode())
            return
        encoded = await asyncio.to_thread(base64.b64encode, audio)  # megabytes: off the event loop
        await self.send(
            ChunkMessage(
                index=event.index,
                audio_base64=encoded.decode("ascii"),
                metadata=event.metadata,
                lateness_seconds=event.lateness_seconds,
            )
        )

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(LEASE_REFRESH_SECONDS)
            if self._session is not None:
                with contextlib.suppress(Exception):
                    await self._state.jams.touch(self._session, SOCKET_LEASE_SECONDS)

    async def _end(self, reason: str) -> None:
        """Stop the socket's session (if any) and relay its `stopped` (made here if its worker has not said it
        within STOP_WAIT_SECONDS: it is finishing a long chunk; the socket may be gone)."""
        session = self._session
        if session is None:
            return
        with contextlib.suppress(Exception):
            await self._state.jams.stop(session, reason)
        forward = self._forward
        if forward is not None:
            done, _ = await asyncio.wait({forward}, timeout=STOP_WAIT_SECONDS)
            if not done:
                forward.cancel()
                record = await self._state.jams.record(session)
                last = record.index("generated") if record is not None else 0
                with contextlib.suppress(Exception):
                    await self.send(StoppedEvent(reason=reason, code=None, last_index=last))
        self._session = None


def _options(message: StartMessage) -> JamOptions:
    """The start message as the HTTP jam's options (rt mode: one 4/4 bar of `chunk_seconds`)."""
    params = message.params
    fields: dict[str, object] = {
        "styles": params.styles or "",
        "style_weights": params.style_weights or "",
        "guidance_weight": params.guidance_weight,
        "temperature": params.temperature,
        "topk": params.topk,
        "mean": params.mean,
        "centroid_weights": params.centroid_weights or "",
        "seed": params.seed,
        "target_sample_rate": params.target_sample_rate,
        "model": params.model,
        "loop_weight": message.loop_weight,
    }
    if message.mode == "bar":
        if message.bpm is None:
            raise AppError(ErrorCode.VALIDATION_ERROR, "bar mode needs `bpm`.", status_code=422)
        fields |= {"bpm": message.bpm, "bars_per_chunk": message.bars_per_chunk, "beats_per_bar": message.beats_per_bar}
    else:
        fields |= {"bpm": 4 * 60.0 / params.chunk_seconds, "bars_per_chunk": 1, "beats_per_bar": 4}
    try:
        return JamOptions.model_validate({name: value for name, value in fields.items() if value is not None})
    except ValidationError as error:
        raise AppError(ErrorCode.VALIDATION_ERROR, _describe(error), status_code=422) from error


@contextlib.asynccontextmanager
async def _decoded_file(data: str | None) -> AsyncIterator[Path | None]:
    """Base64 audio written to a temporary file (None: none given), removed afterwards; decoded and written
    off the event loop."""
    if data is None:
        yield None
        return
    path = await asyncio.to_thread(_write_decoded, data)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _write_decoded(data: str) -> Path:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise AppError(ErrorCode.AUDIO_UNDECODABLE, "The audio is not valid base64.", status_code=422) from error
    handle, name = tempfile.mkstemp(prefix="soundstage-jam-", suffix=".audio")
    with os.fdopen(handle, "wb") as file:
        file.write(raw)
    return Path(name)


def _describe(error: ValidationError) -> str:
    """What is wrong with a message, in a sentence (never the message echoed back)."""
    problems = error.errors()
    if problems and problems[0].get("type") == "json_invalid":
        return "The message is not valid JSON."
    if problems and problems[0].get("type") == "union_tag_invalid":
        return "Unknown message type: send start, update, consume, reseed, stop or ping."
    if problems and problems[0].get("type") == "union_tag_not_found":
        return "A message needs a `type`."
    first = problems[0] if problems else {"loc": (), "msg": "invalid"}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "message"
    return f"{where}: {first.get('msg', 'invalid')}"

"""One jam session on the worker holding its slot: set up from its start request, then chunk after chunk
until it is stopped, its client is gone, or it fails; every way out ends it in Redis and frees the slot.
How far ahead it runs and when a chunk is late: soundstage_magenta.jam_pacing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from soundstage import telemetry
from soundstage.audio import decode_audio, encode_audio, resample
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas import AudioFormat
from soundstage.schemas.jam_stream import (
    ChunkEvent,
    ConsumeControl,
    Consumption,
    ErrorEvent,
    JamControl,
    JamStart,
    Pace,
    ReseedControl,
    SpliceControl,
    StartedEvent,
    StatusEvent,
    SteeringInfo,
    StopControl,
    StoppedEvent,
    UpdateControl,
)
from soundstage.schemas.loop import MAX_LOOP_SECONDS, PRIME_SECONDS
from soundstage.schemas.style import MAX_STYLE_AUDIO_SECONDS
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine
from soundstage_magenta.finetune import NO_ASSETS, SteeringAssets
from soundstage_magenta.jam_link import SessionLink
from soundstage_magenta.jam_pacing import IDLE_POLL_SECONDS, SessionFigures, lateness_of, window_wait
from soundstage_magenta.jam_session import Chunk, JamSession
from soundstage_magenta.jam_style import StyleRamp
from soundstage_magenta.job import Embedding, embed_prompt
from soundstage_magenta.loop_job import prime_tail, steered_embedding
from soundstage_magenta.system import CHANNELS, SAMPLE_RATE, STYLE_SAMPLE_RATE, MagentaSystem

logger = logging.getLogger(__name__)

Samples = np.ndarray[Any, np.dtype[np.float32]]


class JamRunner:
    def __init__(
        self,
        start: JamStart,
        *,
        engine_for: Callable[[str], MagentaEngine],
        store: ObjectStore,
        link: SessionLink,
        redis: Any,
        hostname: str,
        max_ahead: int,
    ) -> None:
        self.start = start
        self.session_id = start.session_id
        self.figures = SessionFigures()
        self._engine_for = engine_for
        self._store = store
        self._link = link
        self._redis = redis
        self._hostname = hostname
        self._max_ahead = max_ahead
        self._stop = threading.Event()
        self._stop_reason = "stopped by the client"
        self._stop_code: str | None = None
        self._params = start.params
        self._prompts = list(start.params.prompts)
        self._mean = start.params.mean
        self._centroids = list(start.params.centroid_weights)
        self._loop: Samples | None = None
        self._audio_styles: list[tuple[Embedding, float]] = []
        self._assets = NO_ASSETS
        self._last_chunk: Chunk | None = None
        self._anchor: tuple[float, int] | None = None  # (time, chunk): when that chunk started playing
        self._reseeds = 0
        self._explicit = start.consumption is Consumption.EXPLICIT

    def request_stop(self, reason: str, code: str | None) -> None:
        """End the session after the chunk it is making (the worker is stopping)."""
        self._stop_reason, self._stop_code = reason, code
        self._stop.set()

    def run(self) -> None:
        """The session's thread: never raises; the session always ends in Redis."""
        last_index = 0
        try:
            session, ramp, system = self._set_up()
            last_index = self._stream(session, ramp, system)
        except AppError as error:
            self._fail(error.code.value, error.message)
        except Exception:
            logger.exception("jam %s failed", self.session_id)
            self._fail(ErrorCode.INTERNAL_ERROR.value, "The jam session failed on the worker.")
        finally:
            self._finish(last_index)

    # -- set-up ---------------------------------------------------------------------------------------------

    def _set_up(self) -> tuple[JamSession, StyleRamp, MagentaSystem]:
        began = time.monotonic()
        params = self._params
        self._engine = self._engine_for(self.start.model)
        serving = self._engine.serve(params.checkpoint)
        system = serving.system
        self._assets = self._engine.assets_for(params.checkpoint) if params.checkpoint is not None else NO_ASSETS
        if params.loop is not None:
            self._loop = self._read_audio(params.loop, MAX_LOOP_SECONDS, SAMPLE_RATE, CHANNELS)
        # Audio prompts (the loop's own style) are embedded once: their stored copies go, updates reuse them.
        self._audio_styles = [
            (embed_prompt(prompt, system, self._store), prompt.weight) for prompt in self._prompts if prompt.audio
        ]
        self._prompts = [prompt for prompt in self._prompts if prompt.audio is None]
        target = self._target(system, mix=None)
        self._delete_inputs()
        ramp = StyleRamp(system.style_tokens, target, self.start.style_ramp_seconds)
        prime = None if self._loop is None else prime_tail(self._loop)
        session = JamSession(system, params, ramp.tokens, loop=prime)
        info = self._engine.info
        checkpoint = serving.checkpoint()
        if not self._link.begin_running(self._hostname):
            self.request_stop("stopped while it started", None)
        self._link.emit(
            StartedEvent(
                session_id=self.session_id,
                worker=self._hostname,
                model=info.ref,
                random_weights=info.random_weights,
                checkpoint=None if checkpoint is None else f"{checkpoint['repo']}@{checkpoint['step']}",
                steering_assets=self._steering(self._assets),
                chunk_seconds=params.chunk_seconds,
                sample_rate=params.target_sample_rate,
                started_in_seconds=round(time.monotonic() - began, 3),
            )
        )
        return session, ramp, system

    def _target(self, system: MagentaSystem, mix: Embedding | None, mix_weight: float = 1.0) -> Embedding | None:
        extra = [(e, w) for e, w in self._audio_styles if w > 0] + ([] if mix is None else [(mix, mix_weight)])
        return steered_embedding(
            self._prompts,
            mean=self._mean,
            centroid_weights=self._centroids,
            system=system,
            store=self._store,
            assets=self._assets,
            extra=extra,
        )

    @staticmethod
    def _steering(assets: SteeringAssets) -> SteeringInfo:
        return SteeringInfo(repo=assets.repo, mean=assets.mean is not None, centroids=assets.centroid_count)

    def _read_audio(self, name: str, max_seconds: float, rate: int, channels: int) -> Samples:
        decoded = decode_audio(
            self._store.read_bytes(name), max_seconds=max_seconds, sample_rate=rate, channels=channels
        )
        samples: Samples = decoded.samples
        return samples

    def _delete_inputs(self) -> None:
        """The uploaded loop is read once (kept decoded for reseeds): its stored copy goes."""
        names = {prompt.audio for prompt in self._params.prompts if prompt.audio is not None}
        if self._params.loop is not None:
            names.add(self._params.loop)
        self._delete(names)

    def _delete(self, names: set[str]) -> None:
        for name in names:
            try:
                self._store.delete(name)
            except Exception:
                logger.warning("jam %s: could not delete its input %s", self.session_id, name, exc_info=True)

    # -- the stream -----------------------------------------------------------------------------------------

    def _stream(self, session: JamSession, ramp: StyleRamp, system: MagentaSystem) -> int:
        while not self._stop.is_set():
            wait = self._wait_before(session.index + 1)
            for control in self._link.controls(min(wait, IDLE_POLL_SECONDS) if wait > 0 else 0):
                self._apply(control, session, ramp, system)
            if self._stop.is_set():
                break
            if not self._link.client_present():
                self.request_stop("the client went away", ErrorCode.CLIENT_GONE.value)
                break
            if self._wait_before(session.index + 1) > 0:
                continue
            session.update(tokens=ramp.step(self._params.chunk_seconds))
            self._publish(session)
        return session.index

    def _wait_before(self, index: int) -> float:
        """Seconds chunk ``index`` must wait for its window (0: make it now)."""
        consumed, delivered = self._link.window() if index > 1 else (0, 0)
        return window_wait(
            index,
            acknowledged=consumed if (self._explicit or consumed > 0) else max(consumed, delivered),
            max_ahead=self._max_ahead,
            realtime=self.start.pace is Pace.REALTIME,
            anchor=self._anchor,
            chunk_seconds=self._params.chunk_seconds,
            now=time.time(),
        )

    def _publish(self, session: JamSession) -> None:
        began = time.monotonic()
        chunk = session.next_chunk()
        compute = time.monotonic() - began
        ready = time.time()
        if self._anchor is None:
            self._anchor = (ready, 1)
        lateness = lateness_of(chunk.index, ready, self._anchor, self._params.chunk_seconds)
        figures = self.figures
        figures.chunks += 1
        figures.compute_seconds += compute
        figures.underruns += lateness > 0
        figures.max_lateness = max(figures.max_lateness, lateness)
        if chunk.index == 1:
            figures.first_chunk_seconds = round(ready - figures.started_at, 3)
        wav = encode_audio(chunk.samples, chunk.metadata.sample_rate, AudioFormat.WAV).data
        event = ChunkEvent(
            index=chunk.index,
            metadata=chunk.metadata,
            generated_at=ready,
            compute_seconds=round(compute, 4),
            lateness_seconds=round(lateness, 4),
        )
        self._link.emit(event, wav, chunk=chunk.index)
        self._link.update(generated=chunk.index)
        _, delivered = self._link.window()
        self._link.trim(delivered)  # nobody reads a chunk handed out again: its WAV leaves Redis
        self._last_chunk = chunk
        try:
            telemetry.record_jam_chunk(self._redis, self.start.model, lateness)
        except Exception:
            logger.debug("jam %s: metrics not recorded", self.session_id, exc_info=True)

    # -- controls -------------------------------------------------------------------------------------------

    def _apply(self, control: JamControl, session: JamSession, ramp: StyleRamp, system: MagentaSystem) -> None:
        try:
            if isinstance(control, StopControl):
                self.request_stop(control.reason, None)
            elif isinstance(control, ConsumeControl):
                if self._anchor is None or control.index > self._anchor[1]:
                    self._anchor = (control.at or time.time(), control.index)
            elif isinstance(control, UpdateControl):
                self._update(control, session, ramp, system)
            elif isinstance(control, ReseedControl):
                self._reseed(control, session)
            elif isinstance(control, SpliceControl):
                self._splice(control, session)
        except AppError as error:  # a bad update is refused; the stream goes on as it was
            self._link.emit(ErrorEvent(code=error.code.value, message=error.message, fatal=False))
        except Exception:
            logger.exception("jam %s: a %s control failed", self.session_id, control.type)
            message = f"The {control.type} could not be applied; the jam goes on as it was."
            self._link.emit(ErrorEvent(code=ErrorCode.INTERNAL_ERROR.value, message=message, fatal=False))

    def _update(self, control: UpdateControl, session: JamSession, ramp: StyleRamp, system: MagentaSystem) -> None:
        restyled = (
            control.prompts is not None
            or control.mean is not None
            or control.centroid_weights is not None
            or control.use_current_mix_as_style
            or control.loop_weight is not None
        )
        if restyled:
            mix = self._mix_embedding(system) if control.use_current_mix_as_style else None
            prompts, mean, centroids, audio = self._prompts, self._mean, self._centroids, self._audio_styles
            if control.loop_weight is not None:
                self._audio_styles = [(embedding, control.loop_weight) for embedding, _ in audio]
            self._prompts = control.prompts if control.prompts is not None else self._prompts
            self._mean = control.mean if control.mean is not None else self._mean
            self._centroids = control.centroid_weights if control.centroid_weights is not None else self._centroids
            try:
                target = self._target(system, mix, control.mix_weight)
            except AppError:
                self._prompts, self._mean, self._centroids, self._audio_styles = prompts, mean, centroids, audio
                raise
            ramp.retarget(target, control.style_ramp_seconds)
        elif control.style_ramp_seconds is not None:
            ramp.ramp_seconds = control.style_ramp_seconds
        session.update(temperature=control.temperature, top_k=control.top_k, guidance_weight=control.guidance_weight)
        self._link.emit(StatusEvent(message="update applied", applied_from_chunk=session.index + 1))

    def _mix_embedding(self, system: MagentaSystem) -> Embedding | None:
        """The style of the last chunk sent (what the client hears now)."""
        if self._last_chunk is None:
            return None
        chunk = self._last_chunk
        mono = resample(chunk.samples, chunk.metadata.sample_rate, STYLE_SAMPLE_RATE).mean(axis=0)
        return system.embed_audio(np.ascontiguousarray(mono[-int(MAX_STYLE_AUDIO_SECONDS * STYLE_SAMPLE_RATE) :]))

    def _reseed(self, control: ReseedControl, session: JamSession) -> None:
        if control.audio is not None:
            try:
                self._loop = self._read_audio(control.audio, MAX_LOOP_SECONDS, SAMPLE_RATE, CHANNELS)
            finally:
                self._delete({control.audio})
        if self._loop is None:
            raise AppError(
                ErrorCode.AUDIO_REQUIRED,
                "This jam started without a loop: send loop_audio to reseed it.",
                status_code=422,
            )
        self._reseeds += 1
        seed = control.seed if control.seed is not None else self._params.seed + self._reseeds
        session.reseed(prime_tail(self._loop), seed=seed)
        self._link.emit(StatusEvent(message="reseeded from the loop", applied_from_chunk=session.index + 1))

    def _splice(self, control: SpliceControl, session: JamSession) -> None:
        try:
            combined = self._read_audio(control.audio, MAX_LOOP_SECONDS, SAMPLE_RATE, CHANNELS)
        finally:
            self._delete({control.audio})
        window = round(PRIME_SECONDS * SAMPLE_RATE)
        pieces = []
        if self._loop is not None and control.anchor_bars > 0:
            # The loop's last anchor bars first (at most half the context), so that its groove stays in mind.
            anchor = min(round(control.anchor_bars * self._params.seconds_per_bar * SAMPLE_RATE), window // 2)
            pieces.append(self._loop[:, max(0, self._loop.shape[1] - anchor) :])
        pieces.append(combined)
        self._reseeds += 1
        session.reseed(prime_tail(np.concatenate(pieces, axis=1)), seed=self._params.seed + self._reseeds)
        self._link.emit(StatusEvent(message="reseeded from the mix", applied_from_chunk=session.index + 1))

    # -- the end --------------------------------------------------------------------------------------------

    def _fail(self, code: str, message: str) -> None:
        self._stop_reason, self._stop_code = message, code
        try:
            self._link.emit(ErrorEvent(code=code, message=message, fatal=True))
        except Exception:
            logger.warning("jam %s: could not report its failure", self.session_id, exc_info=True)

    def _finish(self, last_index: int) -> None:
        # Uploads sent for controls it never applied (a reseed sent as it stopped) go with it.
        try:
            self._delete(set(self._store.names(f"jam-{self.session_id}_")))
        except Exception:
            logger.warning("jam %s: could not list its uploads", self.session_id, exc_info=True)
        try:
            self._link.emit(StoppedEvent(reason=self._stop_reason, code=self._stop_code, last_index=last_index))
            self._link.end(end_reason=self._stop_reason, end_code=self._stop_code or "")
        except Exception:  # Redis away: the session's keys expire, and the API sees its lease lapse
            logger.warning("jam %s: could not record its end", self.session_id, exc_info=True)
        logger.info(
            "jam %s ended after %d chunk(s) (%s); %d underrun(s)",
            self.session_id,
            last_index,
            self._stop_reason,
            self.figures.underruns,
        )

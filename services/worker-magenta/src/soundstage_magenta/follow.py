"""Every magenta worker follows the selected checkpoint: a thread reads the selection in Redis each
FOLLOW_SECONDS and, when it changed, loads its checkpoint and steering assets before any job asks for them,
then beats the heartbeat at once so that `/health` (and a `prewarm` selection waiting on it) sees the worker
serve it. A selection that cannot be served is reported on the heartbeat; jobs that name it fail with its
code, and it is tried afresh for a newer selection (after RETRY_SECONDS when Hugging Face did not answer)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from soundstage import finetunes, magenta_selection
from soundstage.errors import AppError, ErrorCode
from soundstage.schemas.magenta_model import STEP_LATEST
from soundstage.settings import Settings
from soundstage_magenta.engine import MagentaEngine

FOLLOW_SECONDS = 1.0
RETRY_SECONDS = 30.0
"""A selection whose repository Hugging Face did not answer for is tried again after this long."""
logger = logging.getLogger(__name__)


class SelectionFollower:
    def __init__(
        self,
        redis: Any,
        settings: Settings,
        engines: Mapping[str, MagentaEngine],
        beat: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._engines = engines
        self._beat = beat
        self._seen: tuple[int, str] | None = None
        self._retry_at = 0.0
        self._boot_pending = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Publish the boot selection where none is in force, load the selection in force now (served before
        the worker says it is ready), then follow it in a thread."""
        if self._thread is None:
            self._boot_pending = not self.publish_boot()
            self.follow_once()
            self._thread = threading.Thread(target=self._run, name="soundstage-magenta-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop following (before the heartbeat stops: no beat after it removed the worker's entry)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def publish_boot(self) -> bool:
        """MRT_CKPT_REPO's selection, its `latest` resolved here once (from the repository's listing), for the
        API and every worker: the first worker to start publishes it, and a selection made through the API
        is never replaced. False when it could not be resolved or written (tried again each RETRY_SECONDS)."""
        boot = magenta_selection.boot_selection(self._settings)
        if boot.repo is None and boot.assets_repo is None:
            return True  # the plain default: every process computes the same
        try:
            if boot.step == STEP_LATEST and boot.repo is not None:
                steps = finetunes.list_checkpoints(
                    boot.repo, boot.revision, root=magenta_selection.finetunes_root(self._settings)
                )
                if not steps:
                    raise AppError(
                        ErrorCode.UNKNOWN_CHECKPOINT_STEP, f"{boot.repo!r} holds no checkpoints.", status_code=422
                    )
                boot = boot.model_copy(update={"step": max(steps)})
            magenta_selection.publish_boot(self._redis, boot)
            return True
        except AppError as error:  # followed as it is: its jobs and the heartbeat say why it cannot be served
            logger.error("the boot selection (MRT_CKPT_REPO) could not be resolved: %s", error.message)
            return error.code != ErrorCode.CHECKPOINT_REPO_UNAVAILABLE
        except Exception:  # Redis away: each worker resolves `latest` itself meanwhile
            logger.warning("could not publish the boot selection", exc_info=True)
            return False

    def follow_once(self) -> None:
        """Load the selection in force, if it is new to this worker (or failed for a reason that may pass)."""
        try:
            selection = magenta_selection.current(self._redis, self._settings)
        except Exception:  # Redis away for a moment, or a selection written by a newer version
            logger.warning("could not read the selected Magenta checkpoint", exc_info=True)
            return
        seen = (selection.version, selection.size)
        if seen == self._seen and (self._retry_at == 0.0 or time.monotonic() < self._retry_at):
            return
        self._seen, self._retry_at = seen, 0.0
        if self._stop.is_set():
            return
        if selection.size not in self._engines:
            logger.warning("the selected Magenta model %s is not served by this worker", selection.size)
        for ref, engine in self._engines.items():
            try:
                engine.follow(selection)  # another model than the selected one: its own weights
                if ref == selection.size:
                    logger.info(
                        "serving %s from %s step %s (selection %d)",
                        ref,
                        selection.repo or "its own weights",
                        selection.step,
                        selection.version,
                    )
            except AppError as error:
                engine.weights.note_error(error.message, selection.version, error.code)
                logger.error("the selected Magenta checkpoint cannot be served: %s", error.message)
                if error.code == ErrorCode.CHECKPOINT_REPO_UNAVAILABLE:
                    self._retry_at = time.monotonic() + RETRY_SECONDS  # Hugging Face may answer again
            except Exception as error:  # the engine's model failed to load: its jobs say why
                engine.weights.note_error(f"{type(error).__name__} while loading the selection", selection.version)
                logger.exception("the selected Magenta checkpoint could not be loaded")
        if not self._stop.is_set():
            self._beat()

    def _run(self) -> None:
        boot_retry_at = time.monotonic() + RETRY_SECONDS
        while not self._stop.wait(FOLLOW_SECONDS):
            if self._boot_pending and time.monotonic() >= boot_retry_at:
                self._boot_pending = not self.publish_boot()
                boot_retry_at = time.monotonic() + RETRY_SECONDS
            self.follow_once()

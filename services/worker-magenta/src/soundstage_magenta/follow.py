"""Every magenta worker follows the selected checkpoint: a thread reads the selection in Redis each
FOLLOW_SECONDS and, when it changed, loads its checkpoint and steering assets before any job asks for them,
then beats the heartbeat at once so that `/health` (and a `prewarm` selection waiting on it) sees the worker
serve it. A selection that cannot be served is reported on the heartbeat; jobs that name it fail with its
code, and the next selection is tried afresh."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from soundstage import magenta_selection
from soundstage.errors import AppError
from soundstage.settings import Settings
from soundstage_magenta.engine import MagentaEngine

FOLLOW_SECONDS = 1.0
logger = logging.getLogger(__name__)


class SelectionFollower:
    def __init__(
        self, redis: Any, settings: Settings, engines: Mapping[str, MagentaEngine], beat: Callable[[], None]
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._engines = engines
        self._beat = beat
        self._seen: tuple[int, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="soundstage-magenta-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def follow_once(self) -> None:
        """Load the selection in force, if it is new to this worker."""
        try:
            selection = magenta_selection.current(self._redis, self._settings)
        except Exception:  # Redis away for a moment, or a selection written by a newer version
            logger.warning("could not read the selected Magenta checkpoint", exc_info=True)
            return
        seen = (selection.version, selection.size)
        if seen == self._seen:
            return
        self._seen = seen
        engine = self._engines.get(selection.size)
        if engine is None:
            logger.warning("the selected Magenta model %s is not served by this worker", selection.size)
            return
        try:
            engine.system_for(selection)
            engine.assets_for(selection)
            logger.info(
                "serving %s from %s step %s (selection %d)",
                selection.size,
                selection.repo or "its own weights",
                selection.step,
                selection.version,
            )
        except AppError as error:
            logger.error("the selected Magenta checkpoint cannot be served: %s", error.message)
        except Exception as error:  # the engine's model failed to load: its jobs say why
            engine.note_error(f"{type(error).__name__} while loading the selection", selection.version)
            logger.exception("the selected Magenta checkpoint could not be loaded")
        self._beat()

    def _run(self) -> None:
        delay = 0.0  # the boot selection at once, then every FOLLOW_SECONDS
        while not self._stop.wait(delay):
            self.follow_once()
            delay = FOLLOW_SECONDS

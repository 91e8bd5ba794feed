"""The soundtrack's CPU steps, by the `operation` their job rows name (see soundstage_pipeline.steps)."""

from __future__ import annotations

from soundstage_pipeline.soundtrack.crossfades import run_crossfade, run_rescore
from soundstage_pipeline.soundtrack.finalize import run_finalize
from soundstage_pipeline.soundtrack.prepare import run_prepare

OPERATIONS = {
    "prepare_scene": run_prepare,
    "crossfade": run_crossfade,
    "rescore": run_rescore,
    "finalize": run_finalize,
}

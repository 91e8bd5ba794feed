"""Run one embed job: MusicCoCa's style embedding of a text or an audio file, held in the job's result (no
file: `POST /embed/text` and `/embed/audio` answer it as JSON)."""

from __future__ import annotations

from soundstage.db import Job
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import EmbedJobParams
from soundstage.storage import ObjectStore
from soundstage_magenta.engine import MagentaEngine
from soundstage_magenta.job import embed_prompt


def run_embed(job: Job, engine: MagentaEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = EmbedJobParams.model_validate(job.params)
    report(0.0, "loading the model", force=True)
    system = engine.system
    info = engine.info
    report(10.0, "embedding", force=True)
    embedding = embed_prompt(params.prompt, system, store)
    result = {
        "embedding": [float(value) for value in embedding],
        "shape": list(embedding.shape),
        "model": info.ref,
        "random_weights": info.random_weights,
    }
    return JobOutput(files=[], result=result)

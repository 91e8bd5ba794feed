"""A soundtrack whose scenes are audio a test chose (click tracks, tones, silence), run by the real pipeline.

A soundtrack's state is its job rows, so a test can write the rows of a soundtrack whose generation steps
(`scene:k`, `tail:k`) are already done, with synthetic audio as their outputs, and hand the soundtrack to
the pipeline pool: everything from there on (tempo matching, cuts, separations, crossfades, scores, the
quality loop's regenerations on the MusicGen pool, the final mix) is the real workers' doing. The rows are
written through the repository, the same way the workers write them, and the files go to the stack's
object store.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf

from soundstage.db import JobRepository, NewChild, NewFile, create_db_engine, create_session_factory
from soundstage.pools import Queue, TaskName
from soundstage.queue import create_celery_app, enqueue_job
from soundstage.schemas import SoundtrackJobParams
from soundstage.settings import Settings
from soundstage.storage import open_store
from soundstage_api.viewer import owner_of
from soundstage_pipeline.soundtrack.plan import SoundtrackPlan
from soundstage_pipeline.soundtrack.rows import plan_of

RATE = 32000


@dataclass
class SeededScene:
    """Scene k as the test wants it generated: its audio from where it starts on the timeline (0 for the
    first scene, the previous scene's handoff for the others), and for all but the last its tail (the scene
    continuing through its outgoing crossfade, from its handoff)."""

    audio: np.ndarray
    tail: np.ndarray | None = None


def soundtrack_params(request: Mapping[str, Any], **choices: Any) -> SoundtrackJobParams:
    """A soundtrack job's params as the API would store them (the test decides the stages)."""
    defaults = {
        "seed": 7,
        "model": "random:tiny",
        "use_stem_aware_crossfade": False,
        "use_quality_loop": False,
        "max_regen_attempts": 2,
        "context_seconds": 10.0,
        "tempo_threshold": 0.04,
        "max_tempo_stretch": 0.25,
        "demucs_model": "random:tiny",
    }
    return SoundtrackJobParams.model_validate({**request, **defaults, **choices})


def handoffs(plan: SoundtrackPlan, rate: int = RATE) -> list[int]:
    """Where each scene (but the last) hands over, in samples: where its tail and the next scene start."""
    return [round(plan.handoff(k) * rate) for k in range(plan.transitions)]


def seed_soundtrack(
    env: Mapping[str, str], params: SoundtrackJobParams, scenes: list[SeededScene], *, api_key: str | None = None
) -> str:
    """Write the soundtrack and its done generation steps, store their audio, and send it to the pipeline
    pool; returns the soundtrack's job id. ``env`` is the stack's environment (its database, Redis, store);
    with ``api_key`` the soundtrack is that key's (per-key isolation), as if it had submitted it."""
    settings = Settings(
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        storage_url=env["STORAGE_URL"],
        s3_endpoint_url=env.get("S3_ENDPOINT_URL"),
        s3_region=env.get("AWS_DEFAULT_REGION"),
    )
    repo = JobRepository(create_session_factory(create_db_engine(settings.resolved_database_url)))
    store = open_store(
        settings.resolved_storage_url, s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region
    )
    parent = repo.create(
        kind="soundtrack",
        queue=Queue.PIPELINE.value,
        model=params.model,
        params=params.model_dump(mode="json"),
        owner=owner_of(api_key) if api_key else None,
    )
    outputs: dict[str, np.ndarray] = {}
    for k, scene in enumerate(scenes):
        outputs[f"scene:{k}"] = scene.audio
        if scene.tail is not None:
            outputs[f"tail:{k}"] = scene.tail
    with repo.family(parent.id) as family:
        steps = {
            key: family.add_child(
                NewChild(
                    step=key,
                    kind="generate",
                    queue=Queue.MUSICGEN.value,
                    model=params.model,
                    params={},
                    stage="generating",
                )
            )
            for key in outputs
        }
    for key, step in steps.items():
        name = f"{step.id}_generated.wav"
        stored = store.put_bytes(name, _float_wav(outputs[key]), "audio/wav")
        claimed = repo.claim(step.id, worker="test-seed:0", max_attempts=3, stale_after_s=300)
        assert claimed.job is not None
        audio = outputs[key]
        new = NewFile(name, "audio/wav", stored.size, audio.shape[-1] / RATE, RATE, int(audio.shape[0]))
        assert repo.complete(
            step.id,
            [new],
            {"prompt_seconds": 0.0, "seed": 0, "device": "cpu", "random_weights": False},
            worker="test-seed:0",
        )
    publisher = create_celery_app(settings, "test-seed")
    try:
        enqueue_job(publisher, TaskName.PIPELINE_ADVANCE, parent.id)
    finally:
        publisher.close()
    return parent.id


def _float_wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.ascontiguousarray(samples.T, dtype=np.float32), RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


__all__ = ["RATE", "SeededScene", "handoffs", "plan_of", "seed_soundtrack", "soundtrack_params"]

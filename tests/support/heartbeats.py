"""Worker heartbeats, as a live worker writes them to Redis: what the API reads to learn the served models'
capabilities (melody, sources, segment length) when no worker process runs in the test."""

from __future__ import annotations

from typing import Any

from soundstage import workers
from soundstage.db import utcnow
from soundstage.schemas import ModelCapabilities, WorkerInfo

# What the test models report once loaded (the workers' own figures for them).
MUSICGEN_TINY = ModelCapabilities(model="random:tiny", sample_rate=32000, channels=1, random_weights=True)
MUSICGEN_MELODY = ModelCapabilities(
    model="random:tiny-melody", sample_rate=32000, channels=1, melody=True, random_weights=True
)
FOUR = ["drums", "bass", "other", "vocals"]
DEMUCS_TINY = ModelCapabilities(
    model="random:tiny", sample_rate=44100, channels=2, sources=FOUR, max_segment=7.8, random_weights=True
)
DEMUCS_SIX = ModelCapabilities(
    model="random:tiny-6s", sample_rate=44100, channels=2, sources=[*FOUR, "guitar", "piano"], max_segment=7.8
)
HTDEMUCS = ModelCapabilities(model="htdemucs", sample_rate=44100, channels=2, sources=FOUR, max_segment=7.8)


def report(client: Any, queue: str, *capabilities: ModelCapabilities, hostname: str = "test-worker:1") -> WorkerInfo:
    """Publish the heartbeat of a worker on ``queue`` that has loaded these models."""
    info = WorkerInfo(
        hostname=hostname,
        queue=queue,
        model=capabilities[0].model,
        device="cpu",
        gpu_available=False,
        random_weights=any(c.random_weights for c in capabilities),
        models_loaded=[c.model for c in capabilities],
        model_loaded=True,
        capabilities=list(capabilities),
        seen_at=utcnow(),
    )
    workers.publish(client, info)
    return info

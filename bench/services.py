"""The environment of an API and its workers in services mode, as the benchmarks and `make chaos` run them."""

from __future__ import annotations

import os
from pathlib import Path

MODEL = "random:tiny"
LIMITS_OFF = dict.fromkeys(
    (
        "RATE_LIMIT_PER_MINUTE",
        "RATE_LIMIT_PER_HOUR",
        "KEY_RATE_LIMIT_PER_MINUTE",
        "FAILED_KEY_LIMIT_PER_MINUTE",
        "MAX_ACTIVE_JOBS_PER_KEY",
    ),
    "0",
)
"""Rate limits and per-key caps off: one address and one key stand for every client of a run."""


def services_env(workdir: Path, *, redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    """Real Redis and PostgreSQL, files under ``workdir``, random:tiny models, and LIMITS_OFF (their own tests are in
    tests/integration/test_api_limits.py). ``extra`` adds or overrides settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOUNDSTAGE", "API_KEY"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        STORAGE_URL=str(workdir / "files"),
        DATA_DIR=str(workdir / "data"),
        MODEL_CACHE_DIR=str(workdir / "models"),
        MUSICGEN_MODEL=MODEL,
        DEMUCS_MODEL=MODEL,
        LOG_LEVEL="INFO",
        **LIMITS_OFF,
    )
    env.update(extra)
    return env

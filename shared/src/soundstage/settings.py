"""The one settings object of every Soundstage process.

Built once in each app/worker factory (``Settings()``) and passed down; never read at
import time. Every field maps to the environment variable of the same name in upper
case (``DATABASE_URL``, ``REDIS_URL``, ...); each pool's settings are a nested object read
from its own prefix (``settings.musicgen.model`` is ``MUSICGEN_MODEL``, see
:mod:`soundstage.pool_settings`). The README lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from soundstage.pool_settings import (
    NESTED_SETTINGS,
    DemucsSettings,
    MagentaSettings,
    MusicgenSettings,
    PipelineSettings,
    SoundtrackSettings,
    env_names,
    split_commas,
)

HOSTED_MODEL_SIZES = ("small", "medium", "large")
"""The MusicGen sizes the hosted API names in its URLs (`/v1/meta-musicgen-<size>`)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # --- where things live -------------------------------------------------------
    data_dir: Path = Field(
        default=Path("./data"),
        description="Folder for the embedded mode's SQLite file, stored files, Redis dump and model cache.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: SQLite file `<DATA_DIR>/soundstage.db`. "
        "PostgreSQL: `postgresql+psycopg://user:pass@host:5432/db`.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for the Celery broker and live state. Unset: `make run` starts an "
        "embedded Redis; the API and workers require it.",
    )
    storage_url: str | None = Field(
        default=None,
        description="Where audio files go: a folder path, or `s3://bucket/prefix`. Default: `<DATA_DIR>/files`.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto, R2). Unset: AWS S3."
    )
    s3_region: str | None = Field(default=None, description="S3 region (AWS_DEFAULT_REGION also works).")
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where `random:` test models are built. Default `<DATA_DIR>/models`. "
        "Hugging Face weights use `HF_HOME`.",
    )

    # --- API -----------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="API bind address.")
    port: int = Field(default=8000, ge=1, le=65535, description="API port.")
    api_key: SecretStr | None = Field(default=None, description="A single API key (musicgen-api style).")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; combined with API_KEY."
    )
    admin_api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated API keys that see, cancel and download every job and file (accepted "
        "like API_KEYS); every other key sees only its own.",
    )
    key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="How long the API remembers a stored key's lookup (`soundstage keys`): a new key works "
        "and a revoked one stops within this time.",
    )
    rate_limit_per_minute: int = Field(
        default=10,
        ge=0,
        le=1_000_000,
        description="Job-creating requests one client address may make per minute without an API key (the "
        "Magenta RT API's default); more get 429 `rate_limited` with `Retry-After`. `0`: no limit.",
    )
    rate_limit_per_hour: int = Field(
        default=100,
        ge=0,
        le=10_000_000,
        description="The same per hour (the Magenta RT API's default). `0`: no limit.",
    )
    key_rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        le=10_000_000,
        description="Requests one API key may make per minute (polls and downloads too); more get 429 "
        "`rate_limited` with `Retry-After`. `0`: no limit.",
    )
    failed_key_limit_per_minute: int = Field(
        default=10,
        ge=0,
        le=1_000_000,
        description="Wrong API keys one client address may send per minute; past it, every request with a "
        "key from that address gets 429 `too_many_failed_keys` until the minute frees up. `0`: no limit.",
    )
    max_active_jobs_per_key: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="Jobs one API key may have queued or running at once; one more gets 429 "
        "`too_many_active_jobs`. `0`: no cap.",
    )
    daily_audio_seconds_per_key: float = Field(
        default=0.0,
        ge=0,
        le=1e9,
        description="Seconds of audio one API key may ask to generate per UTC day (failed and cancelled jobs "
        "do not count); every answer to a key carries `X-Remaining-Credits`. Past it: 429 "
        "`quota_exhausted` (406 on the hosted MusicGen API's route, as it answers). `0`: no quota.",
    )
    max_duration: float = Field(
        default=300.0,
        gt=1,
        le=3600,
        description="Longest `duration` a client may ask for, in seconds; also the longest prompt audio "
        "`/generate/continue` accepts.",
    )
    max_upload_mb: float = Field(
        default=50.0,
        gt=0,
        le=2048,
        description="Largest audio upload accepted, in MiB (1 MiB = 1,048,576 bytes); larger uploads get 413 "
        "`upload_too_large`, checked while the upload streams in.",
    )
    max_body_kb: int = Field(
        default=1024,
        ge=16,
        le=1024 * 1024,
        description="Largest request body that is not a multipart upload (JSON), in KiB; a larger one gets 413 "
        "`body_too_large` before it is read whole (and only once its key passed).",
    )
    idempotency_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 30,
        description="How long an `Idempotency-Key` keeps naming the job it created: the same key and request "
        "give that job again; the same key with another request is 409 `idempotency_key_reused`.",
    )
    max_header_kb: int = Field(
        default=32,
        ge=4,
        le=1024,
        description="Largest request line plus headers, in KiB; larger gets 431 `headers_too_large` and the "
        "connection is closed.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Time a client has to send a request's line and headers once it connected or began the "
        "request; then 408 `request_timeout` and the connection is closed.",
    )
    body_idle_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Time without a byte after which an unfinished request body is given up (the connection "
        "is closed); a slow but steady upload goes on.",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="Let URL inputs (`melody_audio_url`, `audio_url`) reach loopback, private, link-local, CGNAT and "
        "other non-public addresses (cloud metadata included). Off: such URLs get 422 `url_not_allowed`. For tests "
        "and closed networks only.",
    )
    fetch_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Longest a URL input may take to fetch, in seconds: DNS, connection, redirects and the "
        "whole download together; slower ones get 422 `url_timeout`.",
    )

    max_separate_seconds: float = Field(
        default=1800.0,
        gt=1,
        le=14400,
        description="Longest audio `POST /separate` accepts, in seconds; longer gets 422 `audio_too_long`.",
    )
    public_reads: bool = Field(
        default=False,
        description="musicgen-api's auth: with API_KEY(S) set, require the key only on POST and DELETE; GET and "
        "HEAD (`/jobs`, `/files`, `/metrics/json`, the compatibility APIs' reads) are public. Off: every route "
        "but `/health`, `/ready` and `/metrics` needs the key.",
    )
    public_base_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated base URLs under which clients reach this API through a proxy "
        "(`https://music.example.com`, `https://example.com/soundstage`). A URL input under one of them that names "
        "a stored file (`<base>/files/<name>`, `<base>/srocks/files/<name>`) is read from storage, as is one "
        "under the request's own host, instead of being fetched over HTTP.",
    )
    sync_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="Longest a request waits for its job (`Prefer: wait`, the S.Rocks and hosted-API routes); "
        "past it the answer is 202 with `{job_id, status}` and `Location: /jobs/{job_id}`.",
    )
    sync_wait_max_connections: int = Field(
        default=64,
        ge=1,
        le=10000,
        description="Requests one API process keeps waiting for their jobs at once (each holds one Redis pub/sub "
        "connection); more wait for a free slot within their own wait limit.",
    )
    hosted_api_models: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Which served MusicGen model answers each size of the hosted API "
        "(`POST /segmind/v1/meta-musicgen-<size>`), as `size=model` pairs separated by commas: "
        "`medium=facebook/musicgen-medium,small=random:tiny`. A size not listed: the served model whose name "
        "ends with `musicgen-<size>`; no such model: 404.",
    )

    # --- worker pools (one nested object per pool, each with its own env prefix) --------
    musicgen: MusicgenSettings = Field(
        default_factory=MusicgenSettings, description="The MusicGen pool (`MUSICGEN_*`)."
    )
    magenta: MagentaSettings = Field(
        default_factory=MagentaSettings, description="The Magenta RealTime pool (`MAGENTA_*`)."
    )
    demucs: DemucsSettings = Field(default_factory=DemucsSettings, description="The Demucs pool (`DEMUCS_*`).")
    pipeline: PipelineSettings = Field(
        default_factory=PipelineSettings, description="The pipeline (CPU) pool (`PIPELINE_*`)."
    )
    soundtrack: SoundtrackSettings = Field(
        default_factory=SoundtrackSettings, description="Soundtrack limits and stages (`SOUNDTRACK_*`)."
    )

    # --- workers, every pool -----------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Torch device for workers.")
    job_timeout_seconds: int = Field(
        default=3600, ge=10, description="Hard limit for one job; the broker's visibility timeout is set above it."
    )
    broker_visibility_timeout: int | None = Field(
        default=None,
        ge=1,
        description="Seconds before a job taken by a worker that died without acknowledging it is "
        "delivered again. Default: JOB_TIMEOUT_SECONDS + 300 (must exceed the longest job).",
    )
    max_job_attempts: int = Field(
        default=3,
        ge=1,
        description="Runs of one job (each ended by its worker dying) before it fails with attempts_exhausted.",
    )
    retention_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 365,
        description="Finished jobs, their outputs and inputs are removed this long after they ended (checked "
        "every 10 s by the workers); 0 keeps them for good.",
    )
    max_stored_files: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="At most this many listed outputs (`GET /files/`) are kept: beyond it the oldest finished "
        "jobs are removed with their files (S.Rocks keeps 100); 0: no cap.",
    )
    job_reap_after_seconds: float = Field(
        default=30,
        ge=1,
        description="A running job whose worker has left the registry (30 s after its process died) and whose "
        "row was not written for this long is queued again by the reaper (checked every 10 s); a queued job "
        "sent this long ago whose message the broker holds nowhere is sent again.",
    )
    job_heartbeat_timeout: float = Field(
        default=300,
        gt=0,
        description="Seconds without a progress write after which a running job counts as abandoned: a "
        "redelivered job is only taken over then (a live one is checked again later).",
    )

    # --- logging -------------------------------------------------------------------
    log_level: str = Field(default="INFO", description="Python log level.")
    log_format: Literal["text", "json"] = Field(default="text", description="`json` in production.")

    @field_validator("api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("public_base_urls", mode="before")
    @classmethod
    def _split_base_urls(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("public_base_urls")
    @classmethod
    def _check_base_urls(cls, value: list[str]) -> list[str]:
        checked = []
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
                raise ValueError(f"{url!r} is not a base URL (http(s)://host[:port][/path])")
            checked.append(url.rstrip("/"))
        return checked

    @field_validator("hosted_api_models", mode="before")
    @classmethod
    def _parse_size_models(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        pairs = {}
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            size, equals, model = item.partition("=")
            if not equals:
                raise ValueError(f"{item!r} is not `size=model`")
            pairs[size.strip().lower()] = model.strip()
        return pairs

    @field_validator("hosted_api_models")
    @classmethod
    def _check_sizes(cls, value: dict[str, str]) -> dict[str, str]:
        for size, model in value.items():
            if size not in HOSTED_MODEL_SIZES:
                raise ValueError(f"unknown size {size!r}; the sizes are {', '.join(HOSTED_MODEL_SIZES)}")
            if not model:
                raise ValueError(f"no model given for size {size!r}")
        return value

    # --- derived values (one place computes them) ----------------------------------
    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'soundstage.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or str((self.data_dir / "files").resolve())

    @property
    def resolved_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.data_dir / "models").resolve()

    @property
    def resolved_visibility_timeout(self) -> int:
        return self.broker_visibility_timeout or self.job_timeout_seconds + 300

    @property
    def accepted_api_keys(self) -> list[str]:
        keys = [key.get_secret_value() for key in self.api_keys]
        if self.api_key is not None and self.api_key.get_secret_value():
            keys.append(self.api_key.get_secret_value())
        return keys + self.accepted_admin_keys

    @property
    def accepted_admin_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.admin_api_keys if key.get_secret_value()]

    @property
    def auth_enabled(self) -> bool:
        return bool(self.accepted_api_keys)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable any process reads into its settings (upper case), nested pools included:
        what deployment files may set."""
        names = {name.upper() for name in cls.model_fields if name not in NESTED_SETTINGS}
        for nested in NESTED_SETTINGS.values():
            names |= env_names(nested)
        return names

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (the embedded launcher `soundstage run` sets it).")
        return self.redis_url

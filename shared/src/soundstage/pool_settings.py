"""The settings of each worker pool, and of the soundtrack pipeline: nested objects of :class:`Settings`.

Each is read from its own environment prefix (``MUSICGEN_MODEL`` is ``settings.musicgen.model``), when the
one :class:`~soundstage.settings.Settings` object of a process is built. The pool registry
(:mod:`soundstage.pools`) names which attribute of the settings belongs to which pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from soundstage.schemas.magenta_model import canonical_size, check_repo_id, parse_step


def split_commas(value: object) -> object:
    """A comma-separated environment value as a list, blanks dropped (lists pass through)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PoolSettings(BaseSettings):
    """What every pool's settings offer: the models it serves (none for a pool without models)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    @property
    def served_models(self) -> list[str]:
        return []


class ModelPoolSettings(PoolSettings):
    """A pool that serves models: one (`<PREFIX>MODEL`) or several (`<PREFIX>MODELS`, the first the default)."""

    model: str = Field(description="The model the pool serves.")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated models the pool serves instead of the one model (requests pick one with "
        "`model`; the first is the default). Empty: the one model alone.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @property
    def served_models(self) -> list[str]:
        """Model names the pool serves, the default first; the API validates a request's `model` against these."""
        return list(self.models) or [self.model]


class MusicgenSettings(ModelPoolSettings):
    model_config = SettingsConfigDict(env_prefix="MUSICGEN_")

    model: str = Field(
        default="facebook/musicgen-small",
        description="Model the MusicGen pool serves: a Hugging Face id, a local folder, or `random:tiny`.",
    )
    engine: Literal["batched", "plain"] = Field(
        default="batched",
        description="`batched` decodes concurrent jobs of a model together (per-job sampling streams); "
        "`plain` runs transformers' generate one job at a time (the reference path).",
    )
    max_batch: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Most sequences (jobs x takes) one MusicGen worker decodes at once; also the number "
        "of jobs it takes from the queue at a time.",
    )


class DemucsSettings(ModelPoolSettings):
    model_config = SettingsConfigDict(env_prefix="DEMUCS_")

    model: str = Field(
        default="htdemucs",
        description="Model the Demucs pool serves: a demucs name (`htdemucs`, `htdemucs_ft`, `htdemucs_6s`, "
        "`hdemucs_mmi`, `mdx_extra`, ...), a local `.th`/`.yaml` file or folder, or `random:tiny`.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="Folder of demucs model files (`<sig>.th` and `<name>.yaml` bags, as `demucs --repo` "
        "reads) for air-gapped sites: named models load from here and nothing is downloaded. Unset: the "
        "Hugging Face hub, then the legacy demucs URLs (as demucs 4.1.0 does).",
    )
    max_jobs: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Separations one Demucs worker runs at once; their segments share the model's batches.",
    )
    batch_segments: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Most segments in one model call (all running jobs together). 0: 8 on a GPU, 1 on a CPU "
        "(where batching does not make a call faster but costs memory).",
    )


class MagentaSettings(ModelPoolSettings):
    model_config = SettingsConfigDict(env_prefix="MAGENTA_")

    model: str = Field(
        default="mrt2_small",
        description="Model the Magenta RealTime pool serves: `mrt2_small` or `mrt2_base` (checkpoints under "
        "MAGENTA_HOME, fetched by `make models`), or `random:tiny`.",
    )
    home: Path | None = Field(
        default=None,
        description="MAGENTA_HOME, magenta-rt's own variable: the folder whose `magenta-rt-v2/` holds the `mrt2_*` "
        "checkpoints and MusicCoCa's and SpectroStream's resources (the worker and the warm-up point magenta-rt "
        "at it). Unset: magenta-rt's default, ~/Documents/Magenta.",
    )
    max_jobs: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Style generations one Magenta worker runs at once (threads sharing the loaded model: while "
        "one decodes or encodes on the CPU, another steps the model).",
    )
    sessions_per_worker: int = Field(
        default=2,
        ge=0,
        le=16,
        description="Jam sessions one Magenta worker holds at once, each with its own stream on the shared model "
        "(0: the worker hosts none). When every slot of every worker is taken, a new jam is refused with 429 "
        "`capacity`.",
    )
    max_ahead_chunks: int = Field(
        default=2,
        ge=1,
        le=16,
        description="How many chunks a jam is generated ahead of what its client consumed (`/magenta/jam/consume`) "
        "or, at `pace: realtime`, of wall-clock playback.",
    )
    jam_idle_seconds: float = Field(
        default=60.0,
        ge=5.0,
        le=3600.0,
        description="An HTTP jam whose client made no call for this long is ended and its slot freed (a "
        "WebSocket jam ends within seconds of its socket closing).",
    )
    max_chunk_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=120.0,
        description="Longest jam chunk accepted (`bars_per_chunk` bars at `bpm`).",
    )
    boot_size: str | None = Field(
        default=None,
        validation_alias=AliasChoices("mrt_size", "magenta_boot_size"),
        description="MRT_SIZE (the research API's name): the served model a finetune selected at boot is a "
        "finetune of (`mrt2_small`, `mrt2_base`, `small`, `base`). Default: MAGENTA_MODEL.",
    )
    boot_repo: str | None = Field(
        default=None,
        validation_alias=AliasChoices("mrt_ckpt_repo", "magenta_boot_repo"),
        description="MRT_CKPT_REPO: a finetune repository (Hugging Face `owner/name`, or its mirror under "
        "MAGENTA_FINETUNES_DIR) to serve from boot, until `POST /magenta/model/select` chooses another.",
    )
    boot_step: str | None = Field(
        default=None,
        validation_alias=AliasChoices("mrt_ckpt_step", "magenta_boot_step"),
        description="MRT_CKPT_STEP: the step of MRT_CKPT_REPO served from boot: digits or `latest` (the default).",
    )
    boot_assets_repo: str | None = Field(
        default=None,
        validation_alias=AliasChoices("mrt_assets_repo", "magenta_boot_assets_repo"),
        description="MRT_ASSETS_REPO: where the steering assets (`mean_style_embed.npy`, `cluster_centroids.npy`) "
        "served from boot come from. Default: MRT_CKPT_REPO.",
    )
    finetunes_dir: Path | None = Field(
        default=None,
        description="Folder of finetune repository mirrors (`<owner>/<name>/checkpoint_<step>.tgz`, the assets): a "
        "repository found here is read here, never from Hugging Face (air-gapped servers). Default: "
        "`<MODEL_CACHE_DIR>/magenta-finetunes`.",
    )

    @field_validator("boot_step")
    @classmethod
    def _known_step(cls, value: str | None) -> str | None:
        parse_step(value)  # digits, `latest` or `none`: a typo must stop the worker, not serve another step
        return value

    @model_validator(mode="after")
    def _served_boot_size(self) -> MagentaSettings:
        if self.boot_size and canonical_size(self.boot_size) not in self.served_models:
            raise ValueError(
                f"MRT_SIZE={self.boot_size!r} is not a model this pool serves ({', '.join(self.served_models)})"
            )
        return self

    @field_validator("boot_repo", "boot_assets_repo")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        return check_repo_id(value) if value else None


class PipelineSettings(PoolSettings):
    """The CPU pool that runs the steps of multi-step jobs (tempo matching, crossfades, mixing) and
    advances them from stage to stage; it loads no model."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_")

    max_jobs: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Steps one pipeline worker runs at once (prefork processes: each step is CPU-bound).",
    )


class SoundtrackSettings(BaseSettings):
    """Limits and stages of `POST /generate/soundtrack`. Three keep musicgen-api's names."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, env_prefix="SOUNDTRACK_", populate_by_name=True
    )

    max_scenes: int = Field(default=200, ge=1, le=10_000, description="Most scenes in one soundtrack.")
    min_scene_seconds: float = Field(
        default=5.0, ge=5.0, le=600, description="Shortest scene accepted, in seconds (never below 5)."
    )
    max_scene_seconds: float = Field(default=600.0, ge=5.0, le=3600, description="Longest scene accepted, in seconds.")
    max_total_seconds: float = Field(
        default=3600.0, ge=5.0, le=4 * 3600, description="Longest soundtrack accepted (all scenes), in seconds."
    )
    context_seconds: float = Field(
        default=10.0,
        ge=1.0,
        le=30.0,
        description="Seconds of the previous scene each scene is conditioned on (MusicGen continuation).",
    )
    tempo_threshold: float = Field(
        default=0.04,
        ge=0.0,
        le=0.5,
        description="A scene whose tempo differs from the soundtrack's (its first scene's) by more than this "
        "fraction is time-stretched to it (Rubber Band), when both pulses are steady.",
    )
    max_tempo_stretch: float = Field(
        default=0.25,
        ge=0.0,
        le=0.5,
        description="Largest tempo change tempo matching applies, as a fraction; a scene further off is left "
        "as it is (a deliberately different tempo).",
    )
    stem_aware: bool = Field(
        default=True,
        validation_alias=AliasChoices("use_stem_aware_crossfade", "soundtrack_stem_aware"),
        description="USE_STEM_AWARE_CROSSFADE (musicgen-api's name): separate both sides of every transition on "
        "the Demucs pool and crossfade each stem with its own curve (the bass swapped on the beat).",
    )
    quality_loop: bool = Field(
        default=True,
        validation_alias=AliasChoices("use_quality_loop", "soundtrack_quality_loop"),
        description="USE_QUALITY_LOOP (musicgen-api's name): score every transition and regenerate the opening "
        "of the later scene when one fails.",
    )
    max_regen_attempts: int = Field(
        default=3,
        ge=0,
        le=10,
        validation_alias=AliasChoices("max_regen_attempts", "soundtrack_max_regen_attempts"),
        description="MAX_REGEN_ATTEMPTS (musicgen-api's name): regenerations of one transition before the best "
        "attempt is kept.",
    )


NESTED_SETTINGS: dict[str, type[BaseSettings]] = {
    "musicgen": MusicgenSettings,
    "magenta": MagentaSettings,
    "demucs": DemucsSettings,
    "pipeline": PipelineSettings,
    "soundtrack": SoundtrackSettings,
}
"""Attribute of :class:`Settings` -> the class of the nested settings object it holds."""


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    """Every environment variable name a settings class reads (upper case): its prefix plus each field
    name, and each field's aliases as they are."""
    prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names

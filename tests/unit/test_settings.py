"""The one settings object, built from the environment as every process builds it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from soundstage.pools import Queue, served_models
from soundstage.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's shell or the CI runner (names are case-insensitive),
    and the relative default DATA_DIR (`./data`) lands in a private folder."""
    names = Settings.env_names()
    for name in list(os.environ):
        if name.upper() in names:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# -------------------------------------------------------------------- API keys


def test_api_keys_are_split_on_commas_and_blanks_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "a, b,,c")
    settings = Settings()
    assert settings.accepted_api_keys == ["a", "b", "c"]
    assert settings.auth_enabled


def test_api_key_is_combined_with_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "a, b,,c")
    monkeypatch.setenv("API_KEY", "single")
    assert Settings().accepted_api_keys == ["a", "b", "c", "single"]


def test_api_key_alone_enables_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY", "single")
    settings = Settings()
    assert settings.accepted_api_keys == ["single"]
    assert settings.auth_enabled


def test_no_keys_means_auth_is_off() -> None:
    settings = Settings()
    assert settings.accepted_api_keys == []
    assert not settings.auth_enabled


def test_blank_keys_do_not_enable_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", " , ,")
    monkeypatch.setenv("API_KEY", "")
    settings = Settings()
    assert settings.accepted_api_keys == []
    assert not settings.auth_enabled


def test_api_keys_are_secret_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "topsecret1")
    monkeypatch.setenv("API_KEY", "topsecret2")
    text = repr(Settings())
    assert "topsecret1" not in text
    assert "topsecret2" not in text


# ------------------------------------------------------------- derived locations


def test_defaults_live_under_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    settings = Settings()
    assert settings.data_dir == data_dir
    assert settings.resolved_database_url == f"sqlite:///{(data_dir / 'soundstage.db').resolve()}"
    assert settings.resolved_storage_url == str((data_dir / "files").resolve())
    assert settings.resolved_model_cache_dir == (data_dir / "models").resolve()


def test_default_data_dir_is_data_in_the_working_directory(tmp_path: Path) -> None:
    settings = Settings()
    expected = (tmp_path / "data").resolve()
    assert settings.resolved_database_url == f"sqlite:///{expected / 'soundstage.db'}"
    assert settings.resolved_storage_url == str(expected / "files")
    assert settings.resolved_model_cache_dir == expected / "models"
    # Absolute, so a later chdir cannot move them.
    assert Path(settings.resolved_storage_url).is_absolute()


def test_explicit_locations_win_over_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:p@db:5432/soundstage")
    monkeypatch.setenv("STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u:p@db:5432/soundstage"
    assert settings.resolved_storage_url == "s3://bucket/prefix"
    assert settings.resolved_model_cache_dir == (tmp_path / "cache").resolve()


# ------------------------------------------------------------ broker and models


def test_visibility_timeout_defaults_to_job_timeout_plus_five_minutes() -> None:
    assert Settings().resolved_visibility_timeout == 3600 + 300


def test_visibility_timeout_follows_job_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_TIMEOUT_SECONDS", "600")
    assert Settings().resolved_visibility_timeout == 900


def test_explicit_visibility_timeout_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_TIMEOUT_SECONDS", "600")
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT", "5000")
    assert Settings().resolved_visibility_timeout == 5000


def test_served_models_default_to_musicgen_small() -> None:
    settings = Settings()
    assert served_models(settings, Queue.MUSICGEN) == ["facebook/musicgen-small"]


def test_served_models_follow_musicgen_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICGEN_MODEL", "random:tiny")
    settings = Settings()
    assert served_models(settings, Queue.MUSICGEN) == ["random:tiny"]
    assert served_models(settings, Queue.MAGENTA) == ["mrt2_small"]
    assert served_models(settings, Queue.DEMUCS) == ["htdemucs"]


def test_demucs_models_are_split_on_commas_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMUCS_MODEL", "htdemucs_ft")
    monkeypatch.setenv("DEMUCS_MODELS", "random:tiny, htdemucs_6s,,random:tiny")
    assert served_models(Settings(), Queue.DEMUCS) == ["random:tiny", "htdemucs_6s"]


def test_musicgen_models_are_split_on_commas_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICGEN_MODEL", "random:tiny")
    monkeypatch.setenv("MUSICGEN_MODELS", " facebook/musicgen-melody,, random:tiny ,facebook/musicgen-melody")
    settings = Settings()
    assert settings.musicgen.models == ["facebook/musicgen-melody", "random:tiny"]
    assert served_models(settings, Queue.MUSICGEN) == ["facebook/musicgen-melody", "random:tiny"]


def test_blank_musicgen_models_fall_back_to_musicgen_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICGEN_MODEL", "random:tiny")
    monkeypatch.setenv("MUSICGEN_MODELS", " , ")
    assert served_models(Settings(), Queue.MUSICGEN) == ["random:tiny"]


def test_max_upload_defaults_to_50_mib(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_upload_bytes == 50 * 1024 * 1024
    monkeypatch.setenv("MAX_UPLOAD_MB", "0.5")
    assert Settings().max_upload_bytes == 512 * 1024


def test_url_inputs_default_to_public_addresses_and_20_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.allow_private_urls, settings.fetch_timeout_seconds) == (False, 20.0)
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("FETCH_TIMEOUT_SECONDS", "2.5")
    settings = Settings()
    assert (settings.allow_private_urls, settings.fetch_timeout_seconds) == (True, 2.5)


def test_require_redis_url_raises_without_redis_url() -> None:
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        Settings().require_redis_url()


def test_require_redis_url_raises_on_an_empty_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        Settings().require_redis_url()


def test_require_redis_url_returns_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert Settings().require_redis_url() == "redis://127.0.0.1:6379/0"


def test_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("musicgen_model", "random:tiny")
    assert Settings().musicgen.model == "random:tiny"


def test_numbers_and_choices_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("DEVICE", "cuda")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("MAX_DURATION", "120.5")
    settings = Settings()
    assert (settings.port, settings.device, settings.log_format, settings.max_duration) == (9000, "cuda", "json", 120.5)


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "eighty"),
        ("DEVICE", "tpu"),
        ("LOG_FORMAT", "xml"),
        ("MAX_DURATION", "1"),
        ("MAX_DURATION", "3601"),
        ("JOB_TIMEOUT_SECONDS", "9"),
        ("BROKER_VISIBILITY_TIMEOUT", "0"),
        ("MAX_JOB_ATTEMPTS", "0"),
        ("MAX_UPLOAD_MB", "0"),
        ("MAX_UPLOAD_MB", "lots"),
        ("ALLOW_PRIVATE_URLS", "perhaps"),
        ("FETCH_TIMEOUT_SECONDS", "0"),
        ("FETCH_TIMEOUT_SECONDS", "601"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [error["loc"] for error in info.value.errors()] == [(name.lower(),)]


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("MUSICGEN_ENGINE", "turbo", "engine"),
        ("MUSICGEN_MAX_BATCH", "0", "max_batch"),
        ("DEMUCS_MAX_JOBS", "65", "max_jobs"),
        ("PIPELINE_MAX_JOBS", "0", "max_jobs"),
        ("SOUNDTRACK_MIN_SCENE_SECONDS", "4", "min_scene_seconds"),
        ("MAX_REGEN_ATTEMPTS", "-1", "max_regen_attempts"),
    ],
)
def test_invalid_pool_values_are_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [error["loc"][-1] for error in info.value.errors()] == [field]


def test_each_pool_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSICGEN_MAX_BATCH", "16")
    monkeypatch.setenv("DEMUCS_MAX_JOBS", "2")
    monkeypatch.setenv("DEMUCS_MODEL_DIR", "/models/demucs")
    monkeypatch.setenv("PIPELINE_MAX_JOBS", "3")
    settings = Settings()
    assert (settings.musicgen.max_batch, settings.demucs.max_jobs, settings.pipeline.max_jobs) == (16, 2, 3)
    assert settings.demucs.model_dir == Path("/models/demucs")
    assert served_models(settings, Queue.PIPELINE) == []


def test_soundtrack_settings_keep_musicgen_apis_names(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings().soundtrack
    assert (defaults.stem_aware, defaults.quality_loop, defaults.max_regen_attempts) == (True, True, 3)
    assert (defaults.max_scenes, defaults.min_scene_seconds, defaults.max_total_seconds) == (200, 5.0, 3600.0)
    monkeypatch.setenv("USE_STEM_AWARE_CROSSFADE", "false")
    monkeypatch.setenv("USE_QUALITY_LOOP", "0")
    monkeypatch.setenv("MAX_REGEN_ATTEMPTS", "5")
    monkeypatch.setenv("SOUNDTRACK_MAX_SCENES", "12")
    soundtrack = Settings().soundtrack
    assert (soundtrack.stem_aware, soundtrack.quality_loop, soundtrack.max_regen_attempts) == (False, False, 5)
    assert soundtrack.max_scenes == 12


def test_env_names_cover_every_pool_and_musicgen_api_name() -> None:
    names = Settings.env_names()
    assert {"MUSICGEN_MODEL", "MUSICGEN_MODELS", "MUSICGEN_ENGINE", "DEMUCS_MODEL_DIR", "PIPELINE_MAX_JOBS"} <= names
    assert {"USE_STEM_AWARE_CROSSFADE", "USE_QUALITY_LOOP", "MAX_REGEN_ATTEMPTS", "SOUNDTRACK_MAX_SCENES"} <= names
    assert {"DATABASE_URL", "REDIS_URL", "API_KEYS"} <= names
    assert "MUSICGEN" not in names and "SOUNDTRACK" not in names

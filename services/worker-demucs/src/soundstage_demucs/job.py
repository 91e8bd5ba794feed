"""Run one separation job: the stored input in, one stored file per stem and a result envelope out."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from soundstage.audio import decode_audio
from soundstage.db import Job, NewFile
from soundstage.errors import AppError, ErrorCode
from soundstage.jobrunner import JobOutput, ProgressReporter
from soundstage.schemas import SEPARATED_WITH_RANDOM_WEIGHTS, SeparateJobParams
from soundstage.storage import ObjectStore, content_type_for
from soundstage_demucs.engine import DemucsEngine, SeparationSettings
from soundstage_demucs.loading import LoadedSeparator
from soundstage_demucs.stems import ACCOMPANIMENT, StemFile, StemWriter


def output_name(job_id: str, stem: str, extension: str) -> str:
    """`{job_id}_{stem}.{ext}` (musicgen-api's names); deterministic, so a retried job overwrites its own files."""
    return f"{job_id}_{stem}.{extension}"


def job_seed(job_id: str) -> int:
    """The shifts' random draws, fixed per job so that a retried job gives the same stems."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big")


def run_separate(job: Job, engine: DemucsEngine, store: ObjectStore, report: ProgressReporter) -> JobOutput:
    params = SeparateJobParams.model_validate(job.params)
    report(0.0, "loading the model", force=True)
    info = engine.info
    stems = params.stem_names()
    _check_stems(stems, info)
    report(0.0, "decoding the input", force=True)
    data = store.read_bytes(params.input_audio)
    # Decoded straight to what the model takes, block by block: memory follows the model's input, not
    # the file's claims (8 channels at 384 kHz hold 35 times the samples of stereo at 44.1 kHz).
    decoded = decode_audio(data, sample_rate=info.sample_rate, channels=info.audio_channels)
    mix = decoded.samples
    source_rate, source_channels = decoded.source_rate, decoded.source_channels
    out_rate = params.sample_rate or source_rate
    out_channels = 1 if source_channels == 1 else info.audio_channels
    # The accompaniment's residual is taken from the input at the output's rate: a second streaming decode.
    reference = (
        decode_audio(data, sample_rate=out_rate, channels=out_channels).samples if ACCOMPANIMENT in stems else None
    )
    expected = round(decoded.source_frames * out_rate / source_rate)  # each stem exactly as long as the input
    del decoded, data  # the model-rate mix (and the reference) are all that is needed from here on

    def on_progress(done: int, total: int) -> None:
        # Segments are ~all the work; the last percent covers closing and uploading the files.
        report(99.0 * done / max(total, 1), f"separating: segment {done}/{total}", force=done == total)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"soundstage-{job.id}-") as folder:
        writer = StemWriter(
            Path(folder),
            stems=stems,
            sources=info.sources,
            model_rate=info.sample_rate,
            out_rate=out_rate,
            out_channels=out_channels,
            fmt=params.format,
            expected_frames=expected,
            reference=reference,
        )
        try:
            settings = SeparationSettings(
                shifts=params.shifts,
                overlap=params.overlap,
                segment=params.segment,
                seed=job_seed(job.id),
                needed_sources=_needed_sources(stems, info),
            )
            engine.separate(mix, settings, writer.write, on_progress)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        compute_seconds = time.monotonic() - started
        report(99.0, "storing the stems", force=True)
        files = [_store_stem(params.output_prefix or job.id, stem, params, store) for stem in written]
    result = {
        "model": info.ref,
        "stems": {stem.stem: new.name for stem, new in zip(written, files, strict=True)},
        "random_weights": info.random_weights,
        "warning": SEPARATED_WITH_RANDOM_WEIGHTS.format(model=info.ref) if info.random_weights else None,
        "device": info.device,
        "compute_seconds": round(compute_seconds, 3),
        "input_seconds": round(params.input_seconds, 3),
    }
    return JobOutput(files=files, result=result, audio_seconds=params.input_seconds)


def _needed_sources(stems: tuple[str, ...], info: LoadedSeparator) -> list[str]:
    """Model sources the requested stems are made of (`other` also takes unrequested guitar/piano)."""
    wanted = {stem for stem in stems if stem != ACCOMPANIMENT}
    if "other" in wanted:
        wanted |= {"guitar", "piano"} & set(info.sources)
    return [source for source in info.sources if source in wanted]


def _check_stems(stems: tuple[str, ...], info: LoadedSeparator) -> None:
    missing = [stem for stem in stems if stem != ACCOMPANIMENT and stem not in info.sources]
    if missing:
        raise AppError(
            ErrorCode.STEMS_NOT_SUPPORTED,
            f"Model {info.ref!r} separates {', '.join(info.sources)}; it has no {', '.join(missing)} source "
            f"(use a six-source model such as htdemucs_6s for stems=6).",
            status_code=422,
        )


def _store_stem(prefix: str, stem: StemFile, params: SeparateJobParams, store: ObjectStore) -> NewFile:
    name = output_name(prefix, stem.stem, params.format.value)
    content_type = content_type_for(name)
    stored = store.put_file(name, stem.path, content_type)
    return NewFile(
        name=name,
        content_type=content_type,
        size_bytes=stored.size,
        duration_s=stem.frames / stem.sample_rate,
        sample_rate=stem.sample_rate,
        channels=stem.channels,
    )

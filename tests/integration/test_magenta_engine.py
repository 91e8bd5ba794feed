"""The Magenta RT 2 engine (magenta-rt 2.0.3, JAX on the CPU) behind our adapter, on `random:tiny`: a real
sampler and codec with random weights, saved as safetensors and loaded back through the system's checkpoint
path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from soundstage_magenta import codec, random_models
from soundstage_magenta.system import (
    CHANNELS,
    EMBEDDING_DIM,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    MagentaSystem,
)

from soundstage.errors import AppError, ErrorCode, ModelUnavailableError

SAMPLING = {"temperature": 1.1, "top_k": 40, "cfg_musiccoca": 3.0}


@pytest.fixture(scope="module")
def tiny(model_cache_dir: Path) -> MagentaSystem:
    return MagentaSystem("random:tiny", cache_dir=model_cache_dir)


def test_random_tiny_is_built_once_into_the_model_cache(tiny: MagentaSystem, model_cache_dir: Path) -> None:
    checkpoint = random_models.checkpoint_path("tiny", model_cache_dir)
    assert checkpoint.is_file() and checkpoint.stat().st_size > 1_000_000
    built_at = checkpoint.stat().st_mtime_ns
    assert random_models.ensure_built("tiny", model_cache_dir) == checkpoint
    assert checkpoint.stat().st_mtime_ns == built_at
    assert tiny.random_weights and not list(checkpoint.parent.glob("*.partial"))


def test_frames_of_48_khz_stereo_audio_conditioned_on_a_style(tiny: MagentaSystem) -> None:
    style = tiny.embed_text("disco funk with slap bass")
    assert style.shape == (EMBEDDING_DIM,) and np.isfinite(style).all()
    generated = tiny.generate(tiny.style_tokens(style), 2 * 25, **SAMPLING)
    samples = generated.samples
    assert SAMPLE_RATE == 48_000 and SAMPLES_PER_FRAME == 1920
    assert samples.shape == (2 * SAMPLE_RATE, CHANNELS) and samples.dtype == np.float32
    assert np.isfinite(samples).all()
    # Written with magenta-rt's fixed 0.5 gain; random weights are quiet, but not silent.
    assert 0 < float(np.abs(samples).max()) <= 0.5


def test_a_forked_state_continues_the_same_stream_twice(tiny: MagentaSystem) -> None:
    style = tiny.style_tokens(tiny.embed_text("ambient pads"))
    opening = tiny.generate(style, 5, **SAMPLING)
    kept = tiny.fork(opening.state)
    first = tiny.generate(style, 10, **SAMPLING, state=opening.state)
    second = tiny.generate(style, 10, **SAMPLING, state=kept)
    assert first.samples.shape == (10 * SAMPLES_PER_FRAME, CHANNELS)
    np.testing.assert_array_equal(first.samples, second.samples)


def test_a_seed_is_the_streams_sampling_key(tiny: MagentaSystem) -> None:
    style = tiny.style_tokens(tiny.embed_text("techno"))
    first = tiny.generate(style, 8, **SAMPLING, state=tiny.new_state(11)).samples
    again = tiny.generate(style, 8, **SAMPLING, state=tiny.new_state(11)).samples
    other = tiny.generate(style, 8, **SAMPLING, state=tiny.new_state(12)).samples
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_audio_is_embedded_at_musiccoca_rate(tiny: MagentaSystem) -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.1, 16_000 * 12).astype(np.float32)
    embedding = tiny.embed_audio(noise)
    assert embedding.shape == (EMBEDDING_DIM,) and np.isfinite(embedding).all()
    assert len(tiny.style_tokens(embedding)) > 0


def test_unconditioned_generation_and_bad_frame_counts(tiny: MagentaSystem) -> None:
    assert tiny.generate(None, 1, **SAMPLING).samples.shape == (SAMPLES_PER_FRAME, CHANNELS)
    with pytest.raises(ValueError):
        tiny.generate(None, 0, **SAMPLING)


@pytest.mark.parametrize("model_ref", ["random:huge", "mrt3_giant", "mrt2_small"])
def test_a_model_that_cannot_be_loaded_is_model_unavailable(
    model_ref: str, model_cache_dir: Path, tmp_path: Path
) -> None:
    from magenta_rt import paths

    before = paths.magenta_home()
    paths.set_magenta_home(tmp_path)  # an empty MAGENTA_HOME: mrt2_small was never fetched
    try:
        with pytest.raises(ModelUnavailableError) as raised:
            MagentaSystem(model_ref, cache_dir=model_cache_dir)
    finally:
        paths.set_magenta_home(before)
    assert raised.value.code is ErrorCode.MODEL_UNAVAILABLE
    assert "random:tiny" in raised.value.message


def test_a_loop_is_encoded_into_one_row_of_codes_per_frame(tiny: MagentaSystem) -> None:
    assert tiny.loops_supported
    loop = (np.random.default_rng(0).standard_normal((round(1.5 * SAMPLE_RATE), CHANNELS)) * 0.1).astype(np.float32)
    codes = tiny.encode_loop(loop)
    assert codes.shape == (38, tiny.depth) and codes.dtype == np.int32  # ceil(1.5 s * 25 frames)
    assert ((codes >= 0) & (codes < 1024)).all() and len(np.unique(codes)) > 10
    np.testing.assert_array_equal(tiny.encode_loop(loop), codes)  # a fresh encoder state per loop
    # The streaming encoder answers a frame late; the codes line up with the audio: an edit of the last
    # frame's samples changes that row only, and the rows are the whole-file encoder's.
    edited = loop.copy()
    edited[-SAMPLES_PER_FRAME // 2 :] = 0.0
    changed = tiny.encode_loop(edited)
    assert (changed[:-1] == codes[:-1]).all() and not (changed[-1] == codes[-1]).all()
    import jax.numpy as jnp
    from sequence_layers import jax as sl  # vendored by magenta-rt: importable once it is imported

    encoder = tiny._encoder
    assert isinstance(encoder, codec.LoopEncoder)
    padded = np.pad(loop, ((0, SAMPLE_RATE), (0, 0)))[None]
    whole = encoder._codec.apply(
        encoder._params,
        sl.Sequence.from_values(jnp.asarray(padded)),
        training=False,
        method=encoder._codec.waveform_to_codes,
    )
    np.testing.assert_array_equal(np.asarray(whole.values[0])[: len(codes), : tiny.depth], codes)
    assert tiny.output_latency_frames == 1  # the codec's decoder looks one frame ahead (a loop job skips it)


def test_priming_with_a_loop_steers_what_follows(tiny: MagentaSystem) -> None:
    rng = np.random.default_rng(1)
    first = tiny.encode_loop((rng.standard_normal((SAMPLE_RATE, CHANNELS)) * 0.1).astype(np.float32))
    second = tiny.encode_loop((rng.standard_normal((SAMPLE_RATE, CHANNELS)) * 0.1).astype(np.float32))

    def after(codes: np.ndarray) -> np.ndarray:
        primed = tiny.prime(codes, None, **SAMPLING, state=tiny.new_state(5))
        assert primed.samples.shape == (codes.shape[0] * SAMPLES_PER_FRAME, CHANNELS)  # the codec decoded them
        return tiny.generate(None, 10, **SAMPLING, state=primed.state).samples

    continued = after(first)
    np.testing.assert_array_equal(after(first), continued)
    assert not np.allclose(after(second), continued, atol=1e-4)
    unprimed = tiny.generate(None, 10, **SAMPLING, state=tiny.new_state(5)).samples
    assert not np.allclose(unprimed, continued, atol=1e-4)


def test_the_style_changes_the_music_with_the_same_seed(tiny: MagentaSystem) -> None:
    # random:tiny's style embedding table is random (Flax leaves it at zeros: styles would do nothing)
    funk = tiny.style_tokens(tiny.embed_text("funk"))
    jazz = tiny.style_tokens(tiny.embed_text("jazz"))
    first = tiny.generate(funk, 25, **SAMPLING, state=tiny.new_state(4)).samples
    np.testing.assert_array_equal(tiny.generate(funk, 25, **SAMPLING, state=tiny.new_state(4)).samples, first)
    assert not np.allclose(tiny.generate(jazz, 25, **SAMPLING, state=tiny.new_state(4)).samples, first, atol=1e-4)


def test_a_finetunes_weights_replace_the_models_without_compiling_again(
    tiny: MagentaSystem, model_cache_dir: Path, tmp_path: Path
) -> None:
    from safetensors import numpy as safetensors_numpy

    base = safetensors_numpy.load_file(str(random_models.checkpoint_path("tiny", model_cache_dir)))
    rng = np.random.default_rng(3)
    tuned_path = tmp_path / "tuned.safetensors"
    noise = {name: 1 + 0.1 * rng.standard_normal(value.shape) for name, value in base.items()}
    safetensors_numpy.save_file(
        {name: (value * noise[name]).astype(value.dtype) for name, value in base.items()}, str(tuned_path)
    )
    tuned = tiny.with_weights(tuned_path)
    assert tuned._forced_step is tiny._forced_step  # the compiled steps are shared: only the weights differ
    assert tuned._system._jit_streaming_step is tiny._system._jit_streaming_step
    style = tiny.style_tokens(tiny.embed_text("dub"))
    mine = tiny.generate(style, 10, **SAMPLING, state=tiny.new_state(4)).samples
    theirs = tuned.generate(style, 10, **SAMPLING, state=tuned.new_state(4)).samples
    assert theirs.shape == mine.shape and not np.array_equal(theirs, mine)
    again = tiny.generate(style, 10, **SAMPLING, state=tiny.new_state(4)).samples
    np.testing.assert_array_equal(again, mine)  # the model's own weights are untouched

    wrong = tmp_path / "wrong.safetensors"
    safetensors_numpy.save_file({name: value[..., :1] for name, value in base.items()}, str(wrong))
    with pytest.raises(AppError) as mismatch:
        tiny.with_weights(wrong)
    assert mismatch.value.code == ErrorCode.CHECKPOINT_INVALID and "shaped" in mismatch.value.message
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(AppError) as unreadable:
        tiny.with_weights(garbage)
    assert unreadable.value.code == ErrorCode.CHECKPOINT_INVALID


def _jam(tiny: MagentaSystem, rate: int = 48_000, seed: int = 5, **fields: object) -> Any:
    from soundstage_magenta.jam_session import JamSession

    from soundstage.schemas.jam import JamParams

    params = JamParams(bpm=97, bars_per_chunk=1, beats_per_bar=4, seed=seed, target_sample_rate=rate, **fields)
    return JamSession(tiny, params, tiny.style_tokens(tiny.embed_text("jazz")))


def _stream(tiny: MagentaSystem, samples: int, *, seed: int = 5, state: Any = None, skip: int = 0) -> np.ndarray:
    """One uninterrupted stream in the jam's style and knobs, one call, at 48 kHz with the jam's gain."""
    from soundstage_magenta.jam_session import SESSION_GAIN

    tokens = tiny.style_tokens(tiny.embed_text("jazz"))
    frames = -(-(samples + skip) // SAMPLES_PER_FRAME)
    generated = tiny.generate(tokens, frames, **SAMPLING | {"cfg_musiccoca": 5.0}, state=state or tiny.new_state(seed))
    return (generated.samples.T[:, skip : skip + samples] * np.float32(SESSION_GAIN)).astype(np.float32)


def test_jam_chunks_are_bar_exact_and_join_into_one_uninterrupted_stream(tiny: MagentaSystem) -> None:
    from soundstage_magenta.jam_session import soft_limit

    session = _jam(tiny)
    chunks = [session.next_chunk() for _ in range(3)]
    assert [chunk.index for chunk in chunks] == [1, 2, 3]
    ends = [round(k * 4 * 60 * 48_000 / 97) for k in (1, 2, 3)]  # 2.474 s a bar: not whole frames
    assert [chunk.samples.shape[1] for chunk in chunks] == [ends[0], ends[1] - ends[0], ends[2] - ends[1]]
    meta = chunks[0].metadata
    assert (meta.bpm, meta.bars, meta.sample_rate, meta.channels, meta.total_samples) == (97, 1, 48_000, 2, ends[0])
    joined = np.concatenate([chunk.samples for chunk in chunks], axis=1)
    # The same seed and style generated in one call, levelled the same way: identical, sample for sample.
    np.testing.assert_array_equal(joined, soft_limit(_stream(tiny, ends[2])))


def test_jam_chunks_at_44_1_khz_are_bar_exact_and_resampled_as_one_stream(tiny: MagentaSystem) -> None:
    import soxr
    from soundstage_magenta.jam_session import soft_limit

    session = _jam(tiny, rate=44_100)
    chunks = [session.next_chunk() for _ in range(3)]
    ends = [round(k * 4 * 60 * 44_100 / 97) for k in (1, 2, 3)]
    assert [chunk.samples.shape[1] for chunk in chunks] == [ends[0], ends[1] - ends[0], ends[2] - ends[1]]
    joined = np.concatenate([chunk.samples for chunk in chunks], axis=1)
    # One resampler over the whole stream, fed at once: what the chunks must add up to (a resampler started
    # again per chunk would differ around every join).
    whole = soxr.ResampleStream(48_000, 44_100, 2, dtype="float32").resample_chunk(
        np.ascontiguousarray(_stream(tiny, round(3 * 4 * 60 * 48_000 / 97) + 4800).T)
    )
    reference = soft_limit(np.ascontiguousarray(np.asarray(whole, dtype=np.float32).T))
    np.testing.assert_allclose(joined, reference[:, : ends[2]], atol=1e-5)
    assert float(np.abs(joined).max()) < 1.0


def test_jam_sessions_share_the_model_and_keep_their_own_streams(tiny: MagentaSystem) -> None:
    alone = _jam(tiny).next_chunk().samples
    first, other = _jam(tiny), _jam(tiny, seed=9)
    interleaved = []
    for _ in range(2):
        interleaved.append(first.next_chunk().samples)
        other.next_chunk()
    np.testing.assert_array_equal(interleaved[0], alone)
    again = _jam(tiny)
    np.testing.assert_array_equal(again.next_chunk().samples, interleaved[0])
    np.testing.assert_array_equal(again.next_chunk().samples, interleaved[1])


def test_a_jam_update_is_heard_from_the_start_of_the_next_chunk(tiny: MagentaSystem) -> None:
    kept, changed = _jam(tiny), _jam(tiny)
    np.testing.assert_array_equal(kept.next_chunk().samples, changed.next_chunk().samples)
    changed.update(tokens=tiny.style_tokens(tiny.embed_text("thrash metal")), temperature=1.5, top_k=10)
    second, unchanged = changed.next_chunk(), kept.next_chunk()
    assert second.metadata.temperature == 1.5 and second.metadata.topk == 10
    assert unchanged.metadata.temperature == 1.1
    end = round(4 * 60 * 48_000 / 97)
    left_over = -(-end // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME - end  # the part of chunk 1's last frame
    assert 0 < left_over < SAMPLES_PER_FRAME
    np.testing.assert_array_equal(second.samples[:, :left_over], unchanged.samples[:, :left_over])
    assert not np.array_equal(
        second.samples[:, left_over : left_over + 960], unchanged.samples[:, left_over : left_over + 960]
    )


def test_a_jam_started_from_a_loop_continues_it_bar_exact(tiny: MagentaSystem) -> None:
    from soundstage_magenta.jam_session import JamSession, soft_limit

    from soundstage.schemas.jam import JamParams

    params = JamParams(bpm=120, bars_per_chunk=1, seed=5)
    tokens = tiny.style_tokens(tiny.embed_text("jazz"))
    loop = (np.random.default_rng(2).standard_normal((2, 2 * SAMPLES_PER_FRAME * 25)) * 0.2).astype(np.float32)
    primed = JamSession(tiny, params, tokens, loop=loop).next_chunk()
    assert primed.samples.shape == (2, 96_000)  # one 4/4 bar at 120 bpm: 2 s
    # By hand: the loop's codes fed through the model, then the stream after the codec's late frame.
    state = tiny.prime(
        tiny.encode_loop(np.ascontiguousarray(loop.T)),
        tokens,
        temperature=1.1,
        top_k=40,
        cfg_musiccoca=5.0,
        state=tiny.new_state(5),
    ).state
    skip = tiny.output_latency_frames * SAMPLES_PER_FRAME
    assert skip > 0
    np.testing.assert_array_equal(primed.samples, soft_limit(_stream(tiny, 96_000, state=state, skip=skip)))


def test_a_reseed_crossfades_into_the_loops_continuation_at_the_next_chunk(tiny: MagentaSystem) -> None:
    from soundstage_magenta.jam_session import CROSSFADE_SECONDS, soft_limit

    session = _jam(tiny)
    first = session.next_chunk()
    loop = (np.random.default_rng(3).standard_normal((2, 25 * SAMPLES_PER_FRAME)) * 0.2).astype(np.float32)
    session.reseed(loop, seed=7)
    second = session.next_chunk()
    ends = [round(k * 4 * 60 * 48_000 / 97) for k in (1, 2)]
    assert second.samples.shape[1] == ends[1] - ends[0]  # the boundaries stay bar-exact
    old = soft_limit(_stream(tiny, ends[0] + 1))
    np.testing.assert_array_equal(first.samples, old[:, : ends[0]])
    np.testing.assert_allclose(second.samples[:, 0], old[:, ends[0]], atol=1e-6)  # the fade starts on the old stream
    state = tiny.prime(
        tiny.encode_loop(np.ascontiguousarray(loop.T)),
        tiny.style_tokens(tiny.embed_text("jazz")),
        temperature=1.1,
        top_k=40,
        cfg_musiccoca=5.0,
        state=tiny.new_state(7),
    ).state
    new = soft_limit(
        _stream(tiny, second.samples.shape[1], state=state, skip=tiny.output_latency_frames * SAMPLES_PER_FRAME)
    )
    fade = round(CROSSFADE_SECONDS * 48_000)
    np.testing.assert_array_equal(second.samples[:, fade:], new[:, fade:])  # then the loop's continuation

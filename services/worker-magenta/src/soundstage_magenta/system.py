"""Our adapter over magenta-rt 2.0.3's MagentaRT2System: the one module that knows its API.

What it relies on, read in magenta-rt 2.0.3 (`magenta_rt/jax/system.py`):
- ``generate(conditioning, cfg_scales, temperature, top_k, frames, state) -> (Waveform, state)``: 48 kHz
  stereo, 25 frames a second of 1920 samples; CFG values become conditioning tokens (no doubled batch);
- the state passed in is donated to the compiled step (``donate_argnums``): it must be copied before it is
  used twice (``fork``);
- the samples are written as int16 with a fixed 0.5 gain (about -6 dB): callers loudness-normalise;
- the system compiles its streaming step when it is built, so loading pays the compile, never a request;
- MusicCoCa's TFLite interpreters are not safe to call from two threads (and its mock seeds numpy's global
  generator): embeddings and their tokenisation are serialised here, and a style is tokenised once per
  job, not once per call of ``generate``;
- there is no audio prefill in the Python system (only its C++ engine has `prefill_state`): a loop is
  encoded with SpectroStream's encoder (`codec.LoopEncoder`) and its codes fed through the model one frame
  at a time by a step of ours (``prime``): the sampler's own step, with the frame it sampled replaced by
  the loop's before the temporal decoder sees it next and before the codec decodes it, so the stream's
  memory (attention caches, codec state) holds the loop itself;
- the compiled step's flax rngs are fixed (PRNGKey(0)), but the sampler keeps its own key in the stream
  state (the depthformer's ``(rng, frame, temporal_state, step)``, folded with the step each frame): a
  seed is that key, replaced in a new state (``new_state``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundstage.errors import AppError, ErrorCode, ModelUnavailableError
from soundstage_magenta import codec, random_models

logger = logging.getLogger(__name__)

STYLE_SAMPLE_RATE = 16_000
"""MusicCoCa's audio rate (mono): audio prompts are decoded to it."""
SAMPLE_RATE = 48_000
CHANNELS = 2
FRAMES_PER_SECOND = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
EMBEDDING_DIM = 768
NAMED_SIZES = ("mrt2_small", "mrt2_base")
_LOAD_LOCK = threading.Lock()  # a random model's build swaps a magenta-rt function for its duration


@dataclass(frozen=True)
class Generated:
    """Audio of some frames: float32 samples shaped (frames * SAMPLES_PER_FRAME, CHANNELS) at SAMPLE_RATE."""

    samples: np.ndarray[Any, np.dtype[np.float32]]
    state: Any  # the stream's state after the last frame (owned by the caller: fork it to reuse it)


class MagentaSystem:
    """One loaded Magenta RT 2 model and its style embedder."""

    def __init__(self, model_ref: str, *, cache_dir: Path, magenta_home: Path | None = None) -> None:
        self.model_ref = model_ref
        self.random_weights = model_ref.startswith(random_models.RANDOM_PREFIX)
        self._embed_lock = threading.Lock()
        with _LOAD_LOCK:
            use_magenta_home(magenta_home)
            self._system = _load(model_ref, cache_dir)
            self._encoder = _load_encoder(model_ref, cache_dir, self._system)
        tokens = self._system._model.target_tokens_config
        self._codebook_size = int(tokens.codebook_size)
        self._reserved_tokens = int(tokens.num_extra_tokens)
        self.depth = int(tokens.rvq_truncation_level)
        """The codec's RVQ levels the model generates (codes per frame)."""
        self.output_latency_frames = int(self._system._sampler.cfg.spectrostream.decoder_lookahead)
        """Frames the codec's decoder answers late (its lookahead): after ``prime``, the first frames
        ``generate`` returns are the end of the primed audio, decoded once its next frame is known."""
        self._forced_step = self._compile_forced_step()

    def with_weights(self, checkpoint: Path) -> MagentaSystem:
        """This system with a finetune's weights (a safetensors checkpoint of the same architecture), read by
        magenta-rt's own loader. The compiled steps take the parameters as an argument, so nothing is
        compiled again; this system keeps serving the jobs that hold it. AppError `checkpoint_invalid` when
        the checkpoint does not match the architecture."""
        import copy

        import jax
        from magenta_rt.jax.system import _load_jax_weights

        try:
            params = _load_jax_weights(checkpoint)
        except Exception as error:  # not safetensors, truncated
            raise AppError(
                ErrorCode.CHECKPOINT_INVALID,
                f"{checkpoint.name} is not a readable safetensors checkpoint ({type(error).__name__}).",
                status_code=422,
            ) from error
        ours = self._system._params
        mismatch = _parameter_mismatch(ours, params)
        if mismatch is not None:
            raise AppError(
                ErrorCode.CHECKPOINT_INVALID,
                f"{checkpoint.name} is not a checkpoint of {self.model_ref}: {mismatch}.",
                status_code=422,
            )
        inner = copy.copy(self._system)
        inner._params = jax.tree.map(lambda new, old: jax.numpy.asarray(new, dtype=old.dtype), params, ours)
        twin = copy.copy(self)
        twin._system = inner
        return twin

    @property
    def loops_supported(self) -> bool:
        """Whether the codec's encoder is loaded (loop continuation needs it)."""
        return isinstance(self._encoder, codec.LoopEncoder)

    def encode_loop(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> codec.Codes:
        """The codec's codes of ``samples`` (float32, (n, 2) at SAMPLE_RATE): (frames, depth). Raises
        ModelUnavailableError where the encoder's weights are missing."""
        if not isinstance(self._encoder, codec.LoopEncoder):
            raise ModelUnavailableError(self._encoder)  # a fresh error per job: jobs run in threads
        return self._encoder.encode(samples)

    def prime(
        self,
        codes: codec.Codes,
        style: list[int] | None,
        *,
        temperature: float,
        top_k: int,
        cfg_musiccoca: float,
        state: Any,
    ) -> Generated:
        """``state`` after the model has been fed ``codes`` ((frames, depth), ``encode_loop``) as if it had
        generated them, and the audio the codec decoded from them. ``state`` is consumed."""
        import jax.numpy as jnp

        block, constants = self._conditioning(style, temperature=temperature, top_k=top_k, cfg=cfg_musiccoca)
        offsets = self._reserved_tokens + self._codebook_size * np.arange(self.depth, dtype=np.int32)
        unique = (np.asarray(codes, dtype=np.int32) % self._codebook_size) + offsets  # depthformer's token ids
        outputs = []
        for frame in unique:
            output, state = self._forced_step(self._system._params, block, constants, state, jnp.asarray(frame))
            outputs.append(output)
        return Generated(samples=_waveform_samples(outputs), state=state)

    def _conditioning(self, style: list[int] | None, *, temperature: float, top_k: int, cfg: float) -> Any:
        from magenta_rt.config import MUSICCOCA

        conditioning: dict[str, list[int] | np.ndarray[Any, Any]] = {} if style is None else {MUSICCOCA.key: style}
        return self._system._build_conditioning(conditioning, {"musiccoca": cfg}, temperature, top_k)

    def _compile_forced_step(self) -> Any:
        """The sampler's streaming step with the sampled frame replaced by a given one (AOT, once per load)."""
        import functools

        import jax
        import jax.numpy as jnp

        sampler = self._system._sampler
        rngs = {"params": jax.random.PRNGKey(42), "random": jax.random.PRNGKey(0)}  # the system's own

        def forced(module: Any, x: Any, state: Any, frame: Any, constants: Any) -> Any:
            first, *rest = module.layers
            sampled, first_state, _ = first.step_with_emits(x, state[0], training=False, constants=constants)
            tokens = jnp.broadcast_to(frame.astype(sampled.values.dtype), sampled.values.shape)
            out = sampled.apply_values(lambda _: tokens)
            encoder_state, previous, (rng, _, temporal, step), countdown = first_state
            previous = previous.apply_values(lambda values: jnp.broadcast_to(frame.astype(values.dtype), values.shape))
            states = [(encoder_state, previous, (rng, out, temporal, step), countdown)]
            for layer, before in zip(rest, state[1:], strict=True):
                out, after, _ = layer.step_with_emits(out, before, training=False, constants=constants)
                states.append(after)
            return out, tuple(states)

        @functools.partial(jax.jit, donate_argnums=(3,))
        def step(params: Any, x: Any, constants: Any, state: Any, frame: Any) -> Any:
            return sampler.apply(params, x, state, frame, constants, rngs=rngs, method=forced)

        block, constants = self._conditioning(None, temperature=1.0, top_k=40, cfg=3.0)
        state = self._system._jit_init_state(self._system._params, {})
        frame = jnp.zeros((self.depth,), jnp.int32)
        return step.lower(self._system._params, block, constants, state, frame).compile()

    def embed_text(self, text: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        """MusicCoCa's style embedding of ``text``: EMBEDDING_DIM floats."""
        with self._embed_lock:
            embedding = self._system.embed_style(text)
        return np.asarray(embedding, dtype=np.float32).reshape(EMBEDDING_DIM)

    def embed_audio(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """MusicCoCa's style embedding of mono audio at STYLE_SAMPLE_RATE (float32, (n,)), pooled over its
        10-second clips: EMBEDDING_DIM floats."""
        from magenta_rt import audio

        waveform = audio.Waveform(np.asarray(samples, dtype=np.float32).reshape(-1, 1), sample_rate=STYLE_SAMPLE_RATE)
        with self._embed_lock:
            embedding = self._system.embed_style(waveform)
        return np.asarray(embedding, dtype=np.float32).reshape(EMBEDDING_DIM)

    def style_tokens(self, style: np.ndarray[Any, np.dtype[np.float32]]) -> list[int]:
        """The conditioning tokens of a style embedding (what ``generate`` is given)."""
        from magenta_rt.config import MUSICCOCA

        with self._embed_lock:
            tokens = self._system._style_model.tokenize(np.asarray(style, dtype=np.float32))
        # What the system does to an embedding it tokenises itself: padded with -1 or cut to the model's depth.
        depth = next(c.rvq_truncation_level for c in self._system._model.input_configs if c.key == MUSICCOCA.key)
        listed = [int(token) for token in np.asarray(tokens).reshape(-1)][:depth]
        return listed + [-1] * (depth - len(listed))

    def new_state(self, seed: int) -> Any:
        """A new stream whose sampling draws come from ``seed`` (the sampler's key in the state)."""
        fresh = self._system._jit_init_state(self._system._params, {})
        return _with_sampler_key(fresh, seed)

    def generate(
        self,
        style: list[int] | None,
        frames: int,
        *,
        temperature: float,
        top_k: int,
        cfg_musiccoca: float,
        state: Any = None,
    ) -> Generated:
        """``frames`` frames conditioned on style tokens (``style_tokens``; None: unconditioned), continuing
        ``state`` (None: a new stream with seed 0). ``state`` is consumed: pass ``fork(state)`` to keep it."""
        from magenta_rt.config import MUSICCOCA

        if frames < 1:
            raise ValueError("frames must be at least 1")
        conditioning: dict[str, list[int] | np.ndarray[Any, Any]] = {} if style is None else {MUSICCOCA.key: style}
        waveform, after = self._system.generate(
            conditioning=conditioning,
            cfg_scales={"musiccoca": cfg_musiccoca},
            temperature=temperature,
            top_k=top_k,
            frames=frames,
            state=state,
        )
        samples = np.asarray(waveform.samples, dtype=np.float32).reshape(-1, CHANNELS)
        return Generated(samples=samples, state=after)

    @staticmethod
    def fork(state: Any) -> Any:
        """A copy of a stream state, for a second use (the compiled step donates the one it is given)."""
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.copy, state)


def _parameter_mismatch(expected: Any, given: Any) -> str | None:
    """How ``given`` parameters differ from ``expected`` in names or shapes (None: they match)."""
    from flax import traverse_util

    ours = traverse_util.flatten_dict(expected, sep="/")  # type: ignore[no-untyped-call]
    theirs = traverse_util.flatten_dict(given, sep="/")  # type: ignore[no-untyped-call]
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra:
        return f"{len(missing)} parameters missing (e.g. {missing[:1]}), {len(extra)} unknown (e.g. {extra[:1]})"
    for name in sorted(ours):
        if tuple(ours[name].shape) != tuple(theirs[name].shape):
            return f"{name} is shaped {tuple(theirs[name].shape)}, not {tuple(ours[name].shape)}"
    return None


def _waveform_samples(outputs: list[Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The int16 frames the sampler emitted, as float32 (n, CHANNELS) the way the system converts them."""
    import jax
    from sequence_layers import jax as sl

    values = np.asarray(jax.device_get(sl.Sequence.concatenate_sequences(outputs).values[0]), dtype=np.int16)
    samples: np.ndarray[Any, np.dtype[np.float32]] = (values.astype(np.float32) / 32768.0).reshape(-1, CHANNELS)
    return samples


def _load_encoder(model_ref: str, cache_dir: Path, system: Any) -> codec.LoopEncoder | str:
    """The loaded codec encoder of a model, or why there is none (the message of the error a loop job gets):
    its weights missing or unusable. Style generation and embeddings work either way."""
    from magenta_rt import paths

    depth = int(system._model.target_tokens_config.rvq_truncation_level)
    levels = int(system._model.spectrostream.rvq_truncation_level)  # what the system built its codec with
    quantizer = system._params["params"]["soundstream"]["quantizer"]
    try:
        if model_ref.startswith(random_models.RANDOM_PREFIX):
            size = model_ref.removeprefix(random_models.RANDOM_PREFIX)
            with random_models.codec_for(size):
                config = codec.codec_config(levels)
            weights = codec.load_encoder_weights(random_models.encoder_path(size, cache_dir))
        else:
            config = codec.codec_config(levels)
            weights = codec.load_encoder_weights(Path(paths.resolve_encoder_weights()))
        return codec.LoopEncoder(config, weights, quantizer, depth)
    except ModelUnavailableError as missing:
        return str(missing)
    except Exception as error:  # a corrupt or mismatched file: the model still serves everything else
        logger.exception("Magenta %s: SpectroStream's encoder could not be loaded", model_ref)
        return f"SpectroStream's encoder could not be loaded ({type(error).__name__}): loop continuation is off."


def use_magenta_home(magenta_home: Path | None) -> None:
    """Point magenta-rt at MAGENTA_HOME (settings.magenta.home). magenta-rt reads the variable once, when
    `magenta_rt.paths` is imported; setting it here as well makes the setting hold however the process
    was started. None: leave magenta-rt's own choice."""
    if magenta_home is not None:
        from magenta_rt import paths

        paths.set_magenta_home(Path(magenta_home) / "magenta-rt-v2")  # magenta-rt's own layout under it


HF_REPO = "google/magenta-realtime-2"
"""Where `mrt2_small`, `mrt2_base` and MusicCoCa's and SpectroStream's resources are published."""


def fetch_named(model_ref: str, magenta_home: Path | None = None) -> Path:
    """Download a named model's checkpoint and the shared resources into MAGENTA_HOME (what magenta-rt's
    `mrt models init` and `mrt checkpoints download` fetch), unless they are there; the checkpoint's path.
    ModelUnavailableError when Hugging Face cannot be reached or refuses."""
    from magenta_rt import paths

    if model_ref not in NAMED_SIZES:
        raise ModelUnavailableError(f"Unknown Magenta RT model {model_ref!r}: use {', '.join(NAMED_SIZES)}.")
    use_magenta_home(magenta_home)
    home = Path(paths.magenta_home())
    checkpoint = home / "checkpoints" / f"{model_ref}.safetensors"
    if checkpoint.is_file() and _resources_present(home):
        return checkpoint
    import huggingface_hub

    try:
        huggingface_hub.snapshot_download(
            repo_id=HF_REPO,
            allow_patterns=[
                f"checkpoints/{model_ref}.safetensors",
                "resources/musiccoca/*",
                "resources/spectrostream/*",
            ],
            local_dir=str(home),
        )
    except Exception as error:  # offline, refused, a gated repository without a token
        raise ModelUnavailableError(
            f"Could not fetch Magenta RT model {model_ref!r} from Hugging Face ({HF_REPO}): "
            f"{type(error).__name__}. Set HF_TOKEN where the repository needs it, or copy the files into "
            f"MAGENTA_HOME ({home})."
        ) from error
    return checkpoint


def _resources_present(home: Path) -> bool:
    return (home / "resources" / "spectrostream" / "decoder.safetensors").is_file() and any(
        (home / "resources" / "musiccoca").glob("*")
    )


def _with_sampler_key(state: Any, seed: int) -> Any:
    """``state`` with the sampler's PRNG key (the one uint32 leaf shaped (batch, 2)) drawn from ``seed``."""
    import jax
    import jax.numpy as jnp

    leaves, tree = jax.tree_util.tree_flatten(state)
    keys = [i for i, leaf in enumerate(leaves) if leaf.dtype == jnp.uint32 and leaf.ndim == 2 and leaf.shape[1] == 2]
    if len(keys) != 1:  # magenta-rt's state changed shape: this adapter must be updated with it
        raise RuntimeError(f"expected one sampler key in the Magenta RT state, found {len(keys)}")
    index = keys[0]
    leaves[index] = jax.random.split(jax.random.PRNGKey(seed), leaves[index].shape[0])
    return jax.tree_util.tree_unflatten(tree, leaves)


def _load(model_ref: str, cache_dir: Path) -> Any:
    from magenta_rt import musiccoca
    from magenta_rt.jax.system import MagentaRT2System

    if model_ref.startswith(random_models.RANDOM_PREFIX):
        size = model_ref.removeprefix(random_models.RANDOM_PREFIX)
        if size not in random_models.SIZES:
            raise ModelUnavailableError(
                f"Unknown random Magenta model {model_ref!r}; there is "
                + ", ".join(random_models.RANDOM_PREFIX + s for s in random_models.SIZES)
            )
        checkpoint = random_models.ensure_built(size, cache_dir)
        with random_models.codec_for(size):
            return MagentaRT2System(
                size=random_models.registry_name(size),
                style_model=musiccoca.MockMusicCoCa(),
                checkpoint=str(checkpoint),  # absolute: magenta-rt joins it onto MAGENTA_HOME unchanged
            )
    if model_ref in NAMED_SIZES:
        from magenta_rt import paths

        checkpoint = paths.magenta_home() / "checkpoints" / f"{model_ref}.safetensors"  # magenta-rt's own name
        if not checkpoint.is_file() or not _resources_present(paths.magenta_home()):
            raise ModelUnavailableError(
                f"Magenta RT model {model_ref!r} is not in MAGENTA_HOME (no {checkpoint}): fetch it with "
                "`make models` where Hugging Face is reachable, or use random:tiny offline."
            )
        return MagentaRT2System(size=model_ref)
    raise ModelUnavailableError(f"Unknown Magenta RT model {model_ref!r}: use {', '.join(NAMED_SIZES)} or random:tiny.")

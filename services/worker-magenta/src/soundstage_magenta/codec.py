"""SpectroStream's encoder: audio in, the codec's tokens out (what a loop continuation primes the model with).

magenta-rt 2.0.3's JAX system builds only the decoding half of SpectroStream (tokens to audio); its encoder
weights are published beside the decoder's (`resources/spectrostream/encoder.safetensors`, read by its MLX
port), and the quantizer's codebooks are in every model checkpoint (`params/soundstream/quantizer`). This
module builds the codec from the same config function the system uses, loads those two parts, and runs
the encoder as a stream of one-second blocks through one step compiled at load (a loop of any length
never compiles again). The streaming encoder answers one frame late (its output latency): the first
frame out belongs to the start of the audio only after that frame, so one block of silence is fed after
the audio and the first frame dropped; the result is exactly the codes of the whole-file encoder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from soundstage.errors import ModelUnavailableError

SAMPLE_RATE = 48_000
CHANNELS = 2
FRAMES_PER_SECOND = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
BLOCK_FRAMES = FRAMES_PER_SECOND
"""Frames per compiled encoder step (one second)."""

Codes = np.ndarray[Any, np.dtype[np.int32]]


def codec_config(rvq_truncation_level: int) -> Any:
    """The codec config MagentaRT2System builds its decoder from (a random model's is shrunk by the caller)."""
    from magenta_rt.jax import spectrostream

    return spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config(
        rvq_truncation_level=rvq_truncation_level, use_unique_codes=False
    )


def load_encoder_weights(path: Path) -> dict[str, Any]:
    """The `params/encoder/...` tree of an encoder.safetensors file (magenta-rt's layout)."""
    from flax import traverse_util
    from safetensors import flax as safetensors_flax

    if not path.is_file():
        raise ModelUnavailableError(
            f"SpectroStream's encoder weights are not in MAGENTA_HOME (no {path}): loop continuation needs them; "
            "fetch them with `make models` where Hugging Face is reachable."
        )
    flat = safetensors_flax.load_file(str(path))
    pairs = {tuple(key.split("/")): value for key, value in flat.items()}
    nested: dict[str, Any] = traverse_util.unflatten_dict(pairs)  # type: ignore[no-untyped-call]
    return dict(nested["params"]["encoder"])


class LoopEncoder:
    """Encodes 48 kHz stereo audio into the codec's codes, (frames, depth), depth the model's RVQ levels."""

    def __init__(self, config: Any, encoder_params: dict[str, Any], quantizer_params: dict[str, Any], depth: int):
        import jax
        import jax.numpy as jnp
        from sequence_layers import jax as sl

        self.depth = depth
        self._codec = config.make()
        self._params = {"params": {"encoder": encoder_params, "quantizer": quantizer_params}}
        codec = self._codec

        def initial_state(module: Any) -> Any:
            return module.waveform_to_codes_layer.get_initial_state(
                1, sl.ChannelSpec((CHANNELS,), jnp.float32), training=False
            )

        def step(module: Any, block: Any, state: Any) -> Any:
            return module.waveform_to_codes_layer.step(block, state, training=False)

        self._initial_state = jax.jit(lambda params: codec.apply(params, method=initial_state))
        block = sl.Sequence.from_values(jnp.zeros((1, BLOCK_FRAMES * SAMPLES_PER_FRAME, CHANNELS), jnp.float32))
        state = self._initial_state(self._params)
        self._step = (
            jax.jit(lambda params, x, s: codec.apply(params, x, s, method=step))
            .lower(self._params, block, state)
            .compile()
        )

    def encode(self, samples: np.ndarray[Any, np.dtype[np.float32]]) -> Codes:
        """The codes of ``samples`` (float32, (n, 2) at 48 kHz), one row per started frame."""
        import jax.numpy as jnp
        from sequence_layers import jax as sl

        frames = math.ceil(samples.shape[0] / SAMPLES_PER_FRAME)
        blocks = math.ceil(frames / BLOCK_FRAMES) + 1  # one more: the encoder answers a frame late
        padded = np.zeros((blocks * BLOCK_FRAMES * SAMPLES_PER_FRAME, CHANNELS), dtype=np.float32)
        padded[: samples.shape[0]] = samples
        state = self._initial_state(self._params)
        pieces = []
        size = BLOCK_FRAMES * SAMPLES_PER_FRAME
        for index in range(blocks):
            block = sl.Sequence.from_values(jnp.asarray(padded[None, index * size : (index + 1) * size]))
            codes, state = self._step(self._params, block, state)
            pieces.append(np.asarray(codes.values[0]))
        codes_all = np.concatenate(pieces)[1 : frames + 1, : self.depth]
        return np.ascontiguousarray(codes_all, dtype=np.int32)


def random_encoder_weights(config: Any, seed: int) -> dict[str, Any]:
    """Deterministic random encoder weights for ``config`` (a random model's codec), `params/encoder` tree."""
    import jax
    import jax.numpy as jnp
    from sequence_layers import jax as sl

    codec = config.make()
    audio = sl.Sequence.from_values(jnp.zeros((1, SAMPLES_PER_FRAME * 4, CHANNELS), jnp.float32))
    params = jax.jit(
        lambda key: codec.init({"params": key}, audio, training=False, method=codec.waveform_to_embeddings)
    )(jax.random.PRNGKey(seed))
    import flax

    return dict(flax.core.meta.unbox(params)["params"]["encoder"])  # type: ignore[no-untyped-call]

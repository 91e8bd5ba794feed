"""``random:tiny``: a Magenta RT 2 small enough for a CPU, built offline with deterministic random weights.

It is a real Magenta RT 2 sampler (depthformer plus SpectroStream decoder): a depthformer of one narrow
layer per stack, registered in magenta-rt's model registry so that MagentaRT2System builds it by name, and
the 48 kHz stereo codec with 8 base channels instead of 64 in its convolutions (SHRUNK_CODEC_DEPTH). The
weights are initialised from a fixed seed, saved as safetensors in the model cache and loaded back through
the system's own checkpoint path, the one `mrt2_small` and `mrt2_base` take. Its audio is noise-like: for
tests and benchmarks only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RANDOM_PREFIX = "random:"
BUILDER_VERSION = 2
"""2: the style embedding table is random too (version 1 left it at zeros: styles had no effect)."""
ZERO_TABLE_SCALE = 0.05
BUILD_SEED = 0
SHRUNK_CODEC_DEPTH = 8
SIZES = ("tiny", "mrt2_small", "mrt2_base")
"""`tiny` (ours, for CPUs and tests) and the published architectures with random weights (benchmarks)."""
TINY = "tiny"
_BUILD_LOCK = threading.Lock()  # one build at a time per process; the file is renamed into place


def registry_name(size: str) -> str:
    """The name a random model has in magenta-rt's MODEL_REGISTRY (a published one keeps its own)."""
    return f"soundstage_random_{size}" if size == TINY else size


def codec_for(size: str) -> contextlib.AbstractContextManager[None]:
    """While building ``size``'s system or codec: the shrunk codec for `tiny`, the published one else."""
    return shrunk_codec() if size == TINY else contextlib.nullcontext()


def checkpoint_path(size: str, cache_dir: Path) -> Path:
    return cache_dir / "magenta" / f"random-{size}-v{BUILDER_VERSION}.safetensors"


def encoder_path(size: str, cache_dir: Path) -> Path:
    """Its SpectroStream encoder's weights (loop continuation), in magenta-rt's encoder.safetensors layout."""
    return cache_dir / "magenta" / f"random-{size}-encoder-v{BUILDER_VERSION}.safetensors"


def register(size: str) -> None:
    """Make ``registry_name(size)`` a model magenta-rt knows (idempotent)."""
    import jax.numpy as jnp
    from magenta_rt import config
    from magenta_rt.jax import model

    if size not in SIZES:
        raise ValueError(f"unknown random Magenta model {size!r}; there is {', '.join(SIZES)}")
    if size != TINY:
        return  # magenta-rt registers the published architectures itself
    layer = config.ModelSpec(
        num_layers=1, model_dims=64, hidden_dims=128, num_heads=2, dim_per_head=32, ffn_use_gated_activation=False
    )
    tiny = type(
        "SoundstageRandomTiny",
        (model.MagentaRT2ModelBase,),
        {
            "encoder_size": layer,
            "decoder_temporal_size": layer,
            "decoder_depth_size": layer,
            "compute_dtype": jnp.float32,  # bfloat16 is emulated, slowly, on a CPU
            "encoder_max_past_horizon": 8,
            "decoder_temporal_self_attention_max_past_horizon": 8,
            "decoder_temporal_cross_attention_max_past_horizon": 8,
        },
    )
    model.MODEL_REGISTRY.setdefault(registry_name(size), tiny)


@contextlib.contextmanager
def shrunk_codec() -> Iterator[None]:
    """While MagentaRT2System builds a random model: its codec with SHRUNK_CODEC_DEPTH base channels.

    The system builds its codec from a fixed config function (no parameter for it in 2.0.3), so the
    function is swapped for the duration of the build; the loading lock of the caller keeps other builds
    out meanwhile."""
    from magenta_rt.jax import spectrostream

    original = spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config

    def shrunk(**kwargs: Any) -> Any:
        return dataclasses.replace(
            original(**kwargs), encoder_base_conv_depth=SHRUNK_CODEC_DEPTH, decoder_base_conv_depth=SHRUNK_CODEC_DEPTH
        )

    spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config = shrunk
    try:
        yield
    finally:
        spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config = original


def ensure_built(size: str, cache_dir: Path) -> Path:
    """The checkpoint of ``random:<size>``, built into the model cache the first time."""
    register(size)
    path = checkpoint_path(size, cache_dir)
    with _BUILD_LOCK:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _build(size, path)
        encoder = encoder_path(size, cache_dir)
        if not encoder.exists():
            _build_encoder(size, encoder)
    return path


def _build_encoder(size: str, path: Path) -> None:
    import numpy as np
    from flax import traverse_util
    from magenta_rt.jax import model

    from soundstage_magenta import codec

    with codec_for(size):
        spec = model.get_model_class(registry_name(size))()
        config = codec.codec_config(spec.spectrostream.rvq_truncation_level)
    weights = codec.random_encoder_weights(config, BUILD_SEED + 2)
    flat = traverse_util.flatten_dict({"params": {"encoder": weights}})  # type: ignore[no-untyped-call]
    _save({"/".join(key): np.asarray(value) for key, value in flat.items()}, path)


def _build(size: str, path: Path) -> None:
    import flax
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import traverse_util
    from magenta_rt.jax import model, system
    from sequence_layers import jax as sl

    with codec_for(size):
        spec = model.get_model_class(registry_name(size))()
        codec = system.spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config(
            rvq_truncation_level=spec.spectrostream.rvq_truncation_level, use_unique_codes=False
        )
    sampler = system.MagentaRT2Sampler.Config(depthformer=spec.depthformer_config(), spectrostream=codec).make()
    channels = sum(cfg.rvq_truncation_level for cfg in spec.input_configs)
    block = sl.Sequence.from_values(jnp.zeros((1, 1, channels), jnp.int32))
    constants = {"temperature": jnp.array([1.0]), "top_k": jnp.array([40], jnp.int32)}
    channel_spec = jax.ShapeDtypeStruct([channels], jnp.int32)  # type: ignore[no-untyped-call]

    def one_step(module: Any, x: Any, training: bool, constants: dict[str, Any]) -> Any:
        # The sampler has no __call__ to initialise through: one streaming step creates every parameter.
        state = module.get_initial_state(1, channel_spec, constants={}, training=training)
        return module.step_with_emits(x, state, constants=constants, training=training)

    rngs = {"params": jax.random.PRNGKey(BUILD_SEED), "random": jax.random.PRNGKey(BUILD_SEED + 1)}
    params = jax.jit(lambda r: sampler.init(r, block, training=False, constants=constants, method=one_step))(rngs)
    flat = traverse_util.flatten_dict(flax.core.meta.unbox(params))  # type: ignore[no-untyped-call]
    tensors = {"/".join(key): np.asarray(value) for key, value in flat.items()}  # the checkpoints' own layout
    _save(_without_zero_tables(tensors), path)


def _without_zero_tables(tensors: dict[str, Any]) -> dict[str, Any]:
    """``tensors`` with every all-zero table (2-D or more) filled from a fixed seed. Flax initialises the
    style tokens' embedding (`mulan_dequantizer`) to zeros, which a trained checkpoint overwrites; left at
    zero, a random model would ignore its style conditioning, and no test could see a style change the
    music."""
    import numpy as np

    rng = np.random.default_rng(BUILD_SEED + 3)
    out = dict(tensors)
    for name in sorted(out):
        value = out[name]
        if value.ndim >= 2 and not value.any():
            out[name] = (rng.standard_normal(value.shape) * ZERO_TABLE_SCALE).astype(value.dtype)
    return out


def _save(tensors: dict[str, Any], path: Path) -> None:
    from safetensors import numpy as safetensors_numpy

    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    os.close(handle)
    try:
        safetensors_numpy.save_file(tensors, temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)

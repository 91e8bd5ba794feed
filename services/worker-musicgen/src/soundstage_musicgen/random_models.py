"""Offline builders for random-weight MusicGen checkpoints (``random:<name>`` model refs).

A random model has the real MusicGen layout (T5 text encoder, 4-codebook decoder, EnCodec codec at
32 kHz / 50 frames per second) but deterministic random weights, so the whole worker pipeline can run
and be tested without network access. It is written with ``save_pretrained`` and loaded back through
the very same ``from_pretrained`` path as a Hugging Face checkpoint.

``torch`` and ``transformers`` are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundstage.errors import ModelUnavailableError

RANDOM_PREFIX = "random:"
MARKER_FILE = "soundstage_random.json"
BUILDER_VERSION = 2
BUILD_SEED = 0
# Target RMS of the random codec's output; see _make_codec_audible.
CODEC_TARGET_RMS = 0.1
# A small T5-style vocabulary: every ASCII letter/digit/punctuation is a piece, so any ASCII prompt
# tokenizes without <unk>; a few whole words make typical prompts shorter.
_WORDS = (
    *("the", "a", "and", "with", "of", "in", "for", "music", "beat", "drums", "piano", "guitar", "bass"),
    *("synth", "calm", "happy", "sad", "dark", "epic", "lofi", "jazz", "rock", "pop", "ambient"),
    *("electronic", "chill", "upbeat", "slow", "fast", "mood", "energetic", "melancholic"),
)
# Threads of one process share torch's global RNG, so their builds must not interleave.
_BUILD_LOCK = threading.Lock()
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-_/&+%#"


@dataclass(frozen=True)
class RandomModelSpec:
    """Architecture of one random model; each dict holds config kwargs for transformers."""

    description: str
    text_encoder: dict[str, Any]  # T5Config kwargs
    audio_encoder: dict[str, Any]  # EncodecConfig kwargs (codebook_size also sizes the decoder vocab)
    decoder: dict[str, Any]  # MusicgenDecoderConfig kwargs (vocab/pad/bos derived from the codec)
    generation: dict[str, Any] = field(default_factory=dict)
    melody: bool = False  # a MusicgenMelody checkpoint (chroma conditioning, no cross-attention)


# Mirrors the generation_config.json shipped with facebook/musicgen-*; the engine overrides each call.
_GENERATION_DEFAULTS = {"do_sample": True, "guidance_scale": 3.0, "max_length": 1500, "top_k": 250}

# The real 32 kHz EnCodec used by MusicGen: hop 8*5*4*4 = 640 samples -> 50 frames/s;
# 2.2 kbps at 11 bits per code -> 4 codebooks.
_ENCODEC_32KHZ: dict[str, Any] = {
    "sampling_rate": 32000,
    "audio_channels": 1,
    "upsampling_ratios": [8, 5, 4, 4],
    "target_bandwidths": [2.2],
    "codebook_size": 2048,
    "num_filters": 64,
    "hidden_size": 128,
    "num_lstm_layers": 2,
    "use_causal_conv": False,
    "use_conv_shortcut": False,
    "normalize": False,
}

_TINY_TEXT: dict[str, Any] = {
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
}
# Same hop (640) and rate as the real codec; codebook 64 = 6 bits, so 1.2 kbps -> 4 codebooks.
_TINY_CODEC: dict[str, Any] = {
    **_ENCODEC_32KHZ,
    "codebook_size": 64,
    "target_bandwidths": [1.2],
    "num_filters": 4,
    "hidden_size": 16,
    "num_lstm_layers": 1,
}
_TINY_DECODER: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "ffn_dim": 64,
    "num_codebooks": 4,
    "max_position_embeddings": 2048,
}

SPECS: dict[str, RandomModelSpec] = {
    "tiny": RandomModelSpec(
        description="tiny random MusicGen for tests: 2-layer decoder, 64-entry codebooks",
        text_encoder=_TINY_TEXT,
        audio_encoder=_TINY_CODEC,
        decoder=_TINY_DECODER,
        generation=_GENERATION_DEFAULTS,
    ),
    "tiny-stereo": RandomModelSpec(
        description="tiny random stereo MusicGen for tests: 8 codebooks, left/right interleaved",
        text_encoder=_TINY_TEXT,
        audio_encoder=_TINY_CODEC,
        decoder={**_TINY_DECODER, "num_codebooks": 8, "audio_channels": 2},
        generation=_GENERATION_DEFAULTS,
    ),
    "tiny-melody": RandomModelSpec(
        description="tiny random MusicGen-melody for tests: chroma + text prefix conditioning",
        text_encoder=_TINY_TEXT,
        audio_encoder=_TINY_CODEC,
        decoder=_TINY_DECODER,
        generation=_GENERATION_DEFAULTS,
        melody=True,
    ),
    "small": RandomModelSpec(
        description="exact facebook/musicgen-small architecture with random weights (~590M params)",
        # T5-base dimensions (only the encoder is used by MusicGen).
        text_encoder={
            "vocab_size": 32128,
            "d_model": 768,
            "d_kv": 64,
            "d_ff": 3072,
            "num_layers": 12,
            "num_heads": 12,
            "relative_attention_num_buckets": 32,
        },
        audio_encoder=_ENCODEC_32KHZ,
        decoder={
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "ffn_dim": 4096,
            "num_codebooks": 4,
            "max_position_embeddings": 2048,
            "dropout": 0.1,
            "activation_function": "gelu",
        },
        generation=_GENERATION_DEFAULTS,
    ),
}


def known_random_models() -> list[str]:
    """The accepted ``random:<name>`` refs, e.g. ``["random:small", "random:tiny"]``."""
    return sorted(RANDOM_PREFIX + name for name in SPECS)


def is_random_ref(model_ref: str) -> bool:
    """Whether ``model_ref`` names a random model (``random:<name>``)."""
    return model_ref.startswith(RANDOM_PREFIX)


def build_random_model(name: str, cache_dir: Path) -> Path:
    """Build (once) the random model ``name`` under ``cache_dir`` and return its folder.

    ``name`` is ``"random:tiny"`` (or just ``"tiny"``); the folder is ``cache_dir / "random-tiny"``.
    The build happens in a temporary sibling folder that is renamed into place, so concurrent
    builders never expose a half-written model; the loser of a race discards its copy.
    Raises :class:`ModelUnavailableError` for an unknown name or an unwritable cache.
    """
    short = name.removeprefix(RANDOM_PREFIX)
    spec = SPECS.get(short)
    if spec is None:
        raise ModelUnavailableError(
            f"Unknown random model {name!r}; known random models: {', '.join(known_random_models())}.",
            details={"model": name, "known": known_random_models()},
        )
    target = Path(cache_dir) / f"random-{short}"
    with _BUILD_LOCK:
        if not _is_complete(target):
            _build_into(spec, RANDOM_PREFIX + short, target)
    return target


def _build_into(spec: RandomModelSpec, ref: str, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _write_model(spec, ref, tmp)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ModelUnavailableError(
            f"Could not build random model {ref!r} in {target.parent}: {exc}", details={"model": ref}
        ) from exc


def _is_complete(folder: Path) -> bool:
    # The marker is written last, so its presence means the whole folder is there.
    return (folder / MARKER_FILE).is_file()


def _publish(tmp: Path, target: Path) -> None:
    """Atomically move the finished ``tmp`` folder to ``target`` (rename is atomic on one filesystem)."""
    if target.exists() and not _is_complete(target):
        shutil.rmtree(target, ignore_errors=True)  # leftover from an older, interrupted layout
    try:
        os.rename(tmp, target)
    except OSError:
        if not _is_complete(target):  # someone else won the race only if their copy is complete
            raise


def _write_model(spec: RandomModelSpec, ref: str, folder: Path) -> None:
    import torch
    import transformers

    # fork_rng: fix the seed for deterministic weights without disturbing the caller's RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        processor = _build_processor()
        model = _build_model(spec, len(processor.tokenizer))
        _make_codec_audible(model.audio_encoder)
    model.save_pretrained(folder)
    if spec.melody:
        # The melody processor needs torchaudio (for its chroma); the worker computes chroma
        # itself and needs only the tokenizer.
        processor.tokenizer.save_pretrained(folder)
    else:
        processor.save_pretrained(folder)
    marker = {
        "random_weights": True,
        "model": ref,
        "description": spec.description,
        "seed": BUILD_SEED,
        "builder_version": BUILDER_VERSION,
        "transformers_version": transformers.__version__,
    }
    (folder / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _build_processor() -> Any:
    """A MusicgenProcessor: EnCodec feature extractor + a T5 (Unigram) tokenizer built from memory."""
    from transformers import EncodecFeatureExtractor, MusicgenProcessor, T5Tokenizer

    # T5 layout: <pad>=0, </s>=1, <unk>=2, then pieces with Unigram log-prob scores. Whole words
    # score higher than the characters that spell them, so they win the segmentation.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -3.0) for word in _WORDS]
    vocab += [("\u2581" + char, -6.0) for char in _CHARS]
    vocab += [(char, -8.0) for char in _CHARS]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=32000, padding_value=0.0)
    return MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]


def _build_model(spec: RandomModelSpec, tokenizer_size: int) -> Any:
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    text_kwargs = {"vocab_size": tokenizer_size, **spec.text_encoder}
    audio = EncodecConfig(**spec.audio_encoder)
    # Codes are 0..codebook_size-1; the extra id codebook_size is MusicGen's BOS/pad (delay) token.
    special = audio.codebook_size
    decoder = MusicgenDecoderConfig(
        vocab_size=audio.codebook_size, pad_token_id=special, bos_token_id=special, **spec.decoder
    )
    per_channel = decoder.num_codebooks // decoder.audio_channels  # stereo interleaves L/R codebooks
    if audio.num_quantizers < per_channel:
        raise ValueError(f"codec has {audio.num_quantizers} quantizers < {per_channel} codebooks per channel")
    if spec.melody:
        return _build_melody_model(spec, text_kwargs, audio, special)
    config = MusicgenConfig(text_encoder=T5Config(**text_kwargs), audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(config)
    model.eval()  # type: ignore[no-untyped-call]
    generation: Any = model.generation_config
    generation.update(decoder_start_token_id=special, pad_token_id=special, bos_token_id=special, **spec.generation)
    return model


def _build_melody_model(spec: RandomModelSpec, text_kwargs: dict[str, Any], audio: Any, special: int) -> Any:
    from transformers import (
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        MusicgenMelodyForConditionalGeneration,
        T5Config,
    )

    decoder = MusicgenMelodyDecoderConfig(
        vocab_size=audio.codebook_size, pad_token_id=special, bos_token_id=special, **spec.decoder
    )
    config = MusicgenMelodyConfig(
        text_encoder=T5Config(**text_kwargs), audio_encoder=audio, decoder=decoder, num_chroma=12, chroma_length=235
    )
    model = MusicgenMelodyForConditionalGeneration(config)
    model.eval()  # type: ignore[no-untyped-call]
    # With the default init (std 0.02) the chroma projection is too weak to change any sampled
    # token of a random model; a unit-scale projection makes the melody audibly condition it.
    import torch

    with torch.no_grad():
        model.audio_enc_to_dec_proj.weight.normal_(0.0, 1.0)
    generation: Any = model.generation_config
    generation.update(decoder_start_token_id=special, pad_token_id=special, bos_token_id=special, **spec.generation)
    return model


def _make_codec_audible(codec: Any) -> None:
    """Adjust the fresh EnCodec init so decoded audio depends on the codes and is clearly audible.

    transformers initialises the codebooks to zeros (real ones come from a checkpoint), so every code
    decodes to the same vector and the waveform is just the conv biases' fixed DC pattern, identical
    for every seed. Random codebooks make the output depend on the codes, zero biases remove the DC
    offset, and a final rescale (exact, since the decoder is then bias-free at the output) puts the
    RMS at CODEC_TARGET_RMS.
    """
    import torch

    with torch.no_grad():
        for layer in codec.quantizer.layers:
            layer.codebook.embed.copy_(torch.randn_like(layer.codebook.embed))
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
        for param_name, param in codec.decoder.named_parameters():
            if param_name.rsplit(".", 1)[-1].startswith("bias"):
                param.zero_()
        # One second of random codes: (chunks=1, batch=1, codebooks, frames=50).
        codes = torch.randint(0, codec.config.codebook_size, (1, 1, codec.config.num_quantizers, 50))
        rms = float(codec.decode(codes, [None]).audio_values.pow(2).mean().sqrt())
        if not math.isfinite(rms) or rms <= 0.0:
            raise ValueError(f"random codec produced unusable output (rms={rms})")
        _scale_last_conv(codec.decoder.layers[-1].conv, CODEC_TARGET_RMS / rms)


def _scale_last_conv(conv: Any, factor: float) -> None:
    # With weight norm the effective weight is g * v / |v|: scaling the magnitude g scales the output.
    parametrizations = getattr(conv, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        parametrizations.weight.original0.mul_(factor)
    else:
        conv.weight.mul_(factor)

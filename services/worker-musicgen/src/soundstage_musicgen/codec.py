"""Between audio and MusicGen tokens: encode a prompt, decode a (long) token sequence.

Tokens are ``(batch, num_codebooks, frames)`` int64; audio is float32 ``(batch, channels,
samples)`` at the codec's sample rate (32 kHz). Stereo checkpoints interleave the left
and right channel's codebooks (0, 2, 4, 6 left; 1, 3, 5, 7 right).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from soundstage_musicgen.loading import LoadedModel

if TYPE_CHECKING:
    import torch

# Long pieces are decoded in chunks so memory stays bounded (the codec's last layers run
# at the full sample rate); each chunk sees DECODE_CONTEXT_FRAMES extra frames on both
# sides, which are decoded and thrown away, so chunk edges match a whole-piece decode.
DECODE_CHUNK_FRAMES = 1500
DECODE_CONTEXT_FRAMES = 50


def encode_audio(loaded: LoadedModel, samples: np.ndarray) -> torch.Tensor:
    """Tokens ``(1, num_codebooks, frames)`` for ``samples`` (float32 ``(channels, n)`` at the
    codec's rate, already mixed to the model's channel count, n a multiple of the hop)."""
    import torch

    codec = loaded.model.audio_encoder
    per_channel = []
    with torch.inference_mode():
        for channel in samples:
            values = torch.from_numpy(np.ascontiguousarray(channel, dtype=np.float32))[None, None].to(loaded.device)
            codes = codec.encode(values).audio_codes  # (1, batch=1, codebooks_per_channel, frames)
            per_channel.append(codes[0, 0, : loaded.codebooks_per_channel])
    # Interleave per codebook level: [L0, R0, L1, R1, ...] for stereo, [0, 1, 2, 3] for mono.
    return torch.stack(per_channel, dim=1).reshape(loaded.num_codebooks, -1)[None].long()


def decode_tokens(loaded: LoadedModel, tokens: torch.Tensor) -> np.ndarray:
    """Audio float32 ``(batch, channels, frames * hop)`` for tokens ``(batch, num_codebooks, frames)``."""
    import torch

    frames = tokens.shape[-1]
    hop = loaded.hop_length
    pieces = []
    with torch.inference_mode():
        for start in range(0, frames, DECODE_CHUNK_FRAMES):
            end = min(start + DECODE_CHUNK_FRAMES, frames)
            lo, hi = max(0, start - DECODE_CONTEXT_FRAMES), min(frames, end + DECODE_CONTEXT_FRAMES)
            audio = _decode_channels(loaded, tokens[..., lo:hi])
            pieces.append(audio[..., (start - lo) * hop : (end - lo) * hop])
    return torch.cat(pieces, dim=-1).float().cpu().numpy()


def _decode_channels(loaded: LoadedModel, tokens: torch.Tensor) -> torch.Tensor:
    import torch

    codec = loaded.model.audio_encoder
    batch = tokens.shape[0]
    channels = []
    for channel in range(loaded.channels):
        codes = tokens[:, channel :: loaded.channels][None]  # (1, batch, codebooks_per_channel, frames)
        channels.append(codec.decode(codes, audio_scales=[None] * batch).audio_values)  # (batch, 1, samples)
    return torch.cat(channels, dim=1)

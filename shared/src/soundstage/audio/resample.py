"""Sample-rate and channel-count conversion on float32 arrays of shape (channels, samples)."""

from __future__ import annotations

import numpy as np
import soxr


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``samples`` (float32, (channels, n)) at ``from_rate`` Hz, resampled to ``to_rate`` Hz.

    Uses libsoxr at its high-quality setting (``HQ``: steep linear-phase anti-aliasing,
    no audible artefacts). The result is float32, (channels, round(n * to_rate / from_rate)).
    Equal rates return the input unchanged (the same array).
    """
    _check_shape(samples)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} and {to_rate}")
    if from_rate == to_rate:
        return samples
    if samples.shape[1] == 0:
        return np.zeros((samples.shape[0], 0), dtype=np.float32)
    # (n, channels) view of a C-contiguous (channels, n) array: soxr's split-channel path.
    frames = np.ascontiguousarray(samples, dtype=np.float32).T
    converted = soxr.resample(frames, from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(converted.T, dtype=np.float32)


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """``samples`` (float32, (c, n)) as ``channels`` channels, (channels, n), same rate.

    - same count: returned unchanged;
    - to mono: the mean of all channels;
    - from mono: the channel repeated (mono to stereo puts the same signal on both sides);
    - more channels to fewer (e.g. 5.1 to stereo): the first ``channels`` are kept, each
      mixed half and half with the mean of the others, so no channel's content is lost;
    - fewer to more (e.g. stereo to 4): the channels repeated in order.
    """
    _check_shape(samples)
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    have = samples.shape[0]
    if have == channels:
        return samples
    if channels == 1:
        return np.ascontiguousarray(samples.mean(axis=0, keepdims=True, dtype=np.float32))
    if have < channels:
        return np.ascontiguousarray(samples[np.arange(channels) % have], dtype=np.float32)
    rest: np.ndarray = samples[channels:].mean(axis=0, keepdims=True, dtype=np.float32)
    return np.ascontiguousarray((samples[:channels] + rest) * np.float32(0.5), dtype=np.float32)


def _check_shape(samples: np.ndarray) -> None:
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise ValueError(f"expected (channels, samples), got shape {samples.shape}")

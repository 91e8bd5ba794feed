"""Chroma features for MusicGen melody conditioning, computed with torch.stft (no torchaudio).

The same features as transformers' `MusicgenMelodyFeatureExtractor` (which needs
torchaudio): a power spectrogram (n_fft 16384, hop 4096, Hann window, centred with
reflection, window-normalised as torchaudio's `normalized=True`), folded into 12 pitch
classes with librosa's chroma filter bank, then reduced to the strongest pitch class per
frame (one-hot), as the melody models were trained.
"""

from __future__ import annotations

import numpy as np

N_FFT = 16384
HOP_LENGTH = 4096
NUM_CHROMA = 12


def chroma_features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """One-hot chroma ``(frames, 12)`` (C = index 0) of mono ``samples`` (float32 ``(n,)``) at
    ``sample_rate`` (the model's, 32 kHz)."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    if waveform.shape[-1] < N_FFT:  # pad short inputs to one window, as transformers does
        pad = N_FFT - waveform.shape[-1]
        waveform = torch.nn.functional.pad(waveform, (pad // 2, pad - pad // 2))
    window = torch.hann_window(N_FFT)
    spectrum = torch.stft(
        waveform, N_FFT, HOP_LENGTH, N_FFT, window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spectrum.abs().pow(2) / window.pow(2).sum()  # torchaudio's normalized=True, power=2
    filters = torch.from_numpy(
        chroma_filter_bank(num_frequency_bins=N_FFT, num_chroma=NUM_CHROMA, sampling_rate=sample_rate, tuning=0)
    ).float()
    raw = filters @ power  # (12, frames)
    strongest = raw.argmax(dim=0)
    one_hot = torch.zeros((raw.shape[1], NUM_CHROMA), dtype=torch.float32)
    one_hot[torch.arange(raw.shape[1]), strongest] = 1.0
    return one_hot.numpy()


def frames_for(seconds: float, sample_rate: int) -> int:
    """Chroma frames covering ``seconds`` (centred STFT: one frame per hop, plus one)."""
    return int(seconds * sample_rate) // HOP_LENGTH + 1

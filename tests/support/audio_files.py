"""Real audio files for upload and decoding tests, encoded here from synthetic signals.

WAV, FLAC, OGG (Vorbis) and MP3 are written with soundfile (libsndfile); M4A and raw AAC
(ADTS) with PyAV's bundled FFmpeg, the way phones and browsers make them.
"""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt
import soundfile as sf

Samples = npt.NDArray[np.float32]

SOUNDFILE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
FFMPEG_FORMATS = {"m4a": "ipod", "aac": "adts"}
ALL_FORMATS = (*SOUNDFILE_FORMATS, *FFMPEG_FORMATS)
LOSSLESS_FORMATS = ("wav", "flac")


def synth(rate: int, channels: int, seconds: float, frequency: float = 440.0, seed: int = 0) -> Samples:
    """A sine at `frequency` (0.4 peak) plus a little white noise on every channel; channel k
    is delayed a little so the channels differ. float32, (channels, round(seconds * rate))."""
    length = round(seconds * rate)
    noise = np.random.default_rng(seed).normal(0.0, 0.01, size=(channels, length))
    t = np.arange(length) / rate
    rows = [0.4 * np.sin(2 * np.pi * frequency * t + 0.5 * k) for k in range(channels)]
    return (np.stack(rows) + noise).astype(np.float32)


def encode(fmt: str, samples: Samples, rate: int) -> bytes:
    """`samples` (float32, (channels, n)) at `rate` Hz as a file of format `fmt` (see ALL_FORMATS)."""
    if fmt in SOUNDFILE_FORMATS:
        container, subtype = SOUNDFILE_FORMATS[fmt]
        buffer = io.BytesIO()
        sf.write(buffer, np.ascontiguousarray(samples.T), rate, format=container, subtype=subtype)
        return buffer.getvalue()
    return _encode_aac(samples, rate, FFMPEG_FORMATS[fmt])


def _encode_aac(samples: Samples, rate: int, container: str) -> bytes:
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as box:
        stream = box.add_stream("aac", rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buffer.getvalue()


def empty_wav(rate: int = 44100, channels: int = 1) -> bytes:
    """A valid WAV header with a data chunk of zero frames."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((0, channels), dtype=np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def dominant_frequency(samples: Samples, rate: int) -> float:
    """Frequency in Hz of the largest FFT bin of the first channel (Hann window)."""
    signal = samples[0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1.0 / rate)[int(np.argmax(spectrum))])

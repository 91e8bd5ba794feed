"""Pure audio helpers on float32 arrays of shape (channels, samples) with an explicit sample rate."""

from soundstage.audio.encode import EncodedAudio, encode_audio

__all__ = ["EncodedAudio", "encode_audio"]

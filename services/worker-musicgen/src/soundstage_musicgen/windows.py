"""Long-form planning: how a piece longer than MusicGen's 30 s window is generated.

Each window is one ``generate`` call conditioned on the text and on the last frames
already generated (or the user's audio prompt), as audiocraft's ``extend_stride`` does:

- WINDOW_FRAMES = 1500 (30 s at 50 Hz): the length MusicGen was trained on; the model's
  attention never sees more than this, so quality holds up inside it.
- EXTEND_STRIDE_FRAMES = 900 (18 s): new audio per extension window, audiocraft's default
  (`extend_stride=18`). The remaining CONTEXT_FRAMES = 600 (12 s) of each window are the
  tail of what came before: enough for the model to pick up tempo, key and texture (a
  few bars), while 60 % of every window's decoder steps still produce new audio.

Windows overlap only in tokens, never in audio: the whole token sequence is decoded by
the codec at the end, so there is no crossfade, no seam and no repeated beat at a join,
and the length is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW_FRAMES = 1500
EXTEND_STRIDE_FRAMES = 900
CONTEXT_FRAMES = WINDOW_FRAMES - EXTEND_STRIDE_FRAMES


@dataclass(frozen=True)
class Window:
    index: int
    context_frames: int  # frames of earlier tokens (or the audio prompt) the window is conditioned on
    new_frames: int  # frames it generates


def plan_windows(total_new_frames: int, prompt_frames: int = 0) -> list[Window]:
    """Windows that generate exactly ``total_new_frames`` after ``prompt_frames`` of prompt.

    The first window of a piece without prompt uses the whole 30 s. When a window
    continues earlier audio it keeps as much of it as fits next to what is still to be
    generated, but at most CONTEXT_FRAMES once more than one stride remains.
    """
    if total_new_frames <= 0:
        raise ValueError("nothing to generate")
    windows: list[Window] = []
    available, remaining = prompt_frames, total_new_frames
    while remaining > 0:
        context = min(available, WINDOW_FRAMES - min(remaining, EXTEND_STRIDE_FRAMES))
        new = min(remaining, WINDOW_FRAMES - context)
        windows.append(Window(index=len(windows), context_frames=context, new_frames=new))
        available += new
        remaining -= new
    return windows

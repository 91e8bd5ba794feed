"""Sampling and classifier-free guidance arguments for transformers' MusicGen ``generate``."""

from __future__ import annotations

from typing import Any

# transformers only runs classifier-free guidance for scales above 1 and then combines
# the conditional and unconditional logits with that fixed scale; below 1 we run it at
# this scale and rescale the conditional half first (see _RescaledGuidance).
_NATIVE_GUIDANCE = 2.0


def guidance_arguments(scale: float) -> dict[str, Any]:
    """CFG as audiocraft defines it, for every scale in 0-10: logits = u + scale * (c - u).

    1 means the conditional logits alone (no guidance pass); 0 means unconditional generation.
    """
    if scale == 1:
        return {"guidance_scale": None}
    if scale > 1:
        return {"guidance_scale": scale}
    from transformers import LogitsProcessorList

    return {"guidance_scale": _NATIVE_GUIDANCE, "logits_processor": LogitsProcessorList([_rescaled_guidance(scale)])}


def _rescaled_guidance(scale: float) -> Any:
    import torch
    from transformers import LogitsProcessor

    class _RescaledGuidance(LogitsProcessor):
        """Runs just before transformers' CFG step (which computes u + 2 * (c' - u)) and sets
        c' = u + (scale / 2) * (c - u), so the result is u + scale * (c - u)."""

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            half = scores.shape[0] // 2
            cond, uncond = scores[:half], scores[half:]
            rescaled = uncond + (scale / _NATIVE_GUIDANCE) * (cond - uncond)
            return torch.cat([rescaled, uncond], dim=0)  # type: ignore[return-value]

    return _RescaledGuidance()


def sampling_arguments(temperature: float, top_k: int, top_p: float) -> dict[str, Any]:
    """Temperature 0 means greedy decoding (transformers rejects a zero temperature when sampling)."""
    if temperature == 0:
        return {"do_sample": False}
    return {
        "do_sample": True,
        "temperature": temperature,
        "top_k": top_k,  # 0 = off
        "top_p": top_p if top_p > 0 else 1.0,  # 1.0 = off
    }

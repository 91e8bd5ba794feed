"""One window of MusicGen decoding through transformers' ``generate`` (the plain, reference path).

``generate`` returns audio, but long-form generation needs the tokens: a stopping
criterion that never stops sees the whole token matrix after every step, reports
progress and keeps the last one, from which the new frames are read back out of the
delay pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from soundstage_musicgen.loading import LoadedModel
from soundstage_musicgen.sampling import guidance_arguments, sampling_arguments

if TYPE_CHECKING:
    import torch

# Report progress every this many decoder steps (plus the last one).
PROGRESS_EVERY_STEPS = 5

StepCallback = Callable[[int], None]
"""Called with the number of decoder steps done in this window; may raise to abort."""


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float


def window_steps(loaded: LoadedModel, new_frames: int) -> int:
    """Decoder steps for ``new_frames``: one per frame plus the codebook delay (K - 1)."""
    return new_frames + loaded.codebooks_per_channel - 1


def generate_window(
    loaded: LoadedModel,
    text_inputs: dict[str, Any],
    context: torch.Tensor | None,
    new_frames: int,
    *,
    sampling: Sampling,
    on_step: StepCallback,
) -> torch.Tensor:
    """New tokens ``(batch, num_codebooks, new_frames)`` continuing ``context`` (``(batch,
    num_codebooks, frames)`` or None) under the text in ``text_inputs`` (processor output).

    Step counting (transformers 5): the decoder starts from one BOS column and appends one
    column per step; codebook k is delayed by k steps, so frame f of codebook k sits in
    column ``context + f + delay(k) + 1`` and ``new_frames + K - 1`` steps produce
    ``new_frames`` complete frames. transformers skips the delay pattern when the total
    length is under 2K - 1 columns, so callers ask for at least K frames.
    """
    import torch
    from transformers import StoppingCriteriaList

    steps = window_steps(loaded, new_frames)
    capture = _capture_criteria(steps, on_step)
    arguments: dict[str, Any] = {
        **text_inputs,
        "max_new_tokens": steps,
        "stopping_criteria": StoppingCriteriaList([capture]),
        **sampling_arguments(sampling.temperature, sampling.top_k, sampling.top_p),
        **guidance_arguments(sampling.guidance_scale),
    }
    context_frames = 0
    if context is not None and context.shape[-1] > 0:
        context_frames = context.shape[-1]
        arguments["decoder_input_ids"] = context.reshape(-1, context_frames).to(loaded.device)
    with torch.inference_mode():
        loaded.model.generate(**arguments)
    sequences = capture.sequences.reshape(-1, loaded.num_codebooks, capture.sequences.shape[-1])
    columns = [
        sequences[:, k, context_frames + loaded.delay(k) + 1 : context_frames + loaded.delay(k) + 1 + new_frames]
        for k in range(loaded.num_codebooks)
    ]
    return torch.stack(columns, dim=1).cpu()


def encode_text(loaded: LoadedModel, prompt: str) -> torch.Tensor:
    """The prompt's conditioning ``(tokens, decoder_hidden)``: T5 states, projected to the decoder's
    width when the checkpoint has that projection (as ``MusicgenForConditionalGeneration.forward``)."""
    import torch

    model = loaded.model
    inputs = loaded.processor(text=[prompt], return_tensors="pt").to(loaded.device)
    with torch.inference_mode():
        states = model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
        if (
            model.text_encoder.config.hidden_size != model.decoder.config.hidden_size
            and model.decoder.config.cross_attention_hidden_size is None
        ):
            states = model.enc_to_dec_proj(states)
    conditioning: torch.Tensor = states[0]
    return conditioning


def _capture_criteria(total: int, on_step: StepCallback) -> Any:
    import torch
    from transformers import StoppingCriteria

    class _Capture(StoppingCriteria):
        """Never stops; reports progress and keeps the latest token matrix (exceptions from
        ``on_step``, such as a cancellation, propagate out of ``generate``)."""

        def __init__(self) -> None:
            self.step = 0
            self.sequences: torch.Tensor = torch.empty(0, dtype=torch.long)

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            self.sequences = input_ids
            if self.step < total:
                self.step += 1
                if self.step % PROGRESS_EVERY_STEPS == 0 or self.step == total:
                    on_step(self.step)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]

    return _Capture()

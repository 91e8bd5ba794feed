"""Batched decoding of one window for several sequences that share a context length.

A cohort is a set of windows (from different jobs, or several takes of one) that start
together: the same number of context frames, so their token columns line up and one
KV cache serves them all. Each row has its own text, sampling settings, random stream
and length; a row that has produced its frames, or whose job was cancelled, leaves the
batch (its cache rows are dropped), and the others go on. Classifier-free guidance runs
every row twice, with its text and with none, as transformers does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from soundstage.errors import JobCancelledError
from soundstage_musicgen.generation import PROGRESS_EVERY_STEPS
from soundstage_musicgen.loading import LoadedModel
from soundstage_musicgen.sampler import RowSampling, sample

if TYPE_CHECKING:
    import torch


@dataclass
class Row:
    """One window of one take: what to condition on and how many frames to add."""

    text_states: torch.Tensor  # (text_tokens, hidden) T5 output for the prompt
    context: torch.Tensor  # (num_codebooks, context_frames) earlier tokens, possibly empty
    new_frames: int
    sampling: RowSampling
    on_step: Callable[[int], None]  # steps done in this window; may raise JobCancelledError
    result: torch.Tensor | None = None  # (num_codebooks, new_frames) once done
    error: BaseException | None = None  # JobCancelledError (or another) if the row was stopped
    steps_done: int = field(default=0)


def run_cohort(loaded: LoadedModel, rows: list[Row]) -> None:
    """Decode every row's window; fills ``row.result`` or ``row.error``."""
    import torch

    context_frames = rows[0].context.shape[-1]
    if any(row.context.shape[-1] != context_frames for row in rows):
        raise ValueError("a cohort's rows must share their context length")
    model = loaded.model.decoder
    kc, k_all = loaded.codebooks_per_channel, loaded.num_codebooks
    delays = torch.tensor([loaded.delay(k) for k in range(k_all)])
    bos = int(loaded.model.generation_config.decoder_start_token_id)
    steps = [row.new_frames + kc - 1 for row in rows]
    width = 1 + context_frames + max(steps)
    # Delayed token matrix per row: known columns (BOS, context) filled, the rest -1.
    grid = torch.full((len(rows), k_all, width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        for k in range(k_all):
            d = int(delays[k])
            grid[r, k, : d + 1] = bos
            grid[r, k, d + 1 : d + 1 + context_frames] = row.context[k]
    guided = any(row.sampling.guidance_scale != 1 for row in rows)
    states, mask = _text_batch(rows, guided, loaded.device)
    active = list(range(len(rows)))
    cache = None
    position = context_frames + 1  # first column to sample
    inputs = grid[:, :, :position]
    with torch.inference_mode():
        while active:
            ids = inputs.to(loaded.device)
            if guided:
                ids = torch.cat([ids, ids])
            out = model(
                input_ids=ids.reshape(-1, ids.shape[-1]),
                encoder_hidden_states=states,
                encoder_attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits.reshape(-1, k_all, ids.shape[-1], out.logits.shape[-1])[:, :, -1]
            cond = logits[: len(active)]
            uncond = logits[len(active) :] if guided else None
            step = position - context_frames - 1
            tokens = sample(cond, uncond, [rows[i].sampling for i in active], step).cpu()
            column = grid[active, :, position]
            column = torch.where(column >= 0, column, tokens)
            # Past each row's last frame, codebook k is padding (the delay pattern's tail).
            for slot, r in enumerate(active):
                column[slot] = torch.where(position > context_frames + rows[r].new_frames + delays, bos, column[slot])
            grid[active, :, position] = column
            keep = _report_and_finish(
                rows, active, grid, position, context_frames=context_frames, delays=delays, steps=steps
            )
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor([active.index(r) for r in keep], device=loaded.device)
                full = torch.cat([index, index + len(active)]) if guided else index
                cache.reorder_cache(full)
                states, mask = states[full], mask[full]
                active = keep
            inputs = grid[active, :, position : position + 1]
            position += 1


def _report_and_finish(
    rows: list[Row],
    active: list[int],
    grid: torch.Tensor,
    position: int,
    *,
    context_frames: int,
    delays: torch.Tensor,
    steps: list[int],
) -> list[int]:
    """Progress callbacks; collect finished rows; drop cancelled ones. Returns the rows still running."""
    import torch

    keep = []
    for r in active:
        row = rows[r]
        row.steps_done = position - context_frames
        try:
            if row.steps_done % PROGRESS_EVERY_STEPS == 0 or row.steps_done == steps[r]:
                row.on_step(row.steps_done)
        except BaseException as error:
            row.error = error
            continue
        if row.steps_done < steps[r]:
            keep.append(r)
            continue
        starts = [context_frames + int(delay) + 1 for delay in delays]
        columns = [grid[r, k, start : start + row.new_frames] for k, start in enumerate(starts)]
        row.result = torch.stack(columns)
    return keep


def _text_batch(rows: list[Row], guided: bool, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder states ``(rows [x2], longest, hidden)`` padded with a mask; the unconditional
    half (for guidance) is all zeros with an all-zero mask, as transformers does."""
    import torch

    longest = max(row.text_states.shape[0] for row in rows)
    hidden = rows[0].text_states.shape[-1]
    states = torch.zeros((len(rows), longest, hidden), dtype=rows[0].text_states.dtype, device=device)
    mask = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    for r, row in enumerate(rows):
        states[r, : row.text_states.shape[0]] = row.text_states
        mask[r, : row.text_states.shape[0]] = 1
    if guided:
        states = torch.cat([states, torch.zeros_like(states)])
        mask = torch.cat([mask, torch.zeros_like(mask)])
    return states, mask


__all__ = ["JobCancelledError", "Row", "run_cohort"]

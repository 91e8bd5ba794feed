"""Per-row sampling for batched decoding: each row keeps its own guidance, temperature,
top-k, top-p and random stream, so a job samples the same tokens alone or in a batch.

The randomness is counter-based: the Gumbel noise added to a logit is a hash of (seed,
stream, step, codebook, token), not a draw from a shared generator. A row's draws are
therefore the same whatever else is in the batch or in which order jobs arrive, and
`argmax(logits / T + Gumbel)` samples exactly from `softmax(logits / T)` (the Gumbel-max
trick). Only float noise from different batch shapes could flip a token, and only when
two candidates are within ~1e-6 of each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class RowSampling:
    """Sampling settings of one row (one take of one job)."""

    temperature: float  # 0 = greedy
    top_k: int  # 0 = off
    top_p: float  # 0 or 1 = off
    guidance_scale: float  # uncond + scale * (cond - uncond); 1 = conditional only
    seed: int
    stream: int  # distinguishes the takes of one job and its windows


def _hash32(values: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (int64 tensors holding values below 2**32; products stay below 2**59)."""
    values = ((values ^ (values >> 16)) * 0x45D9F3B) & _MASK32
    values = ((values ^ (values >> 16)) * 0x45D9F3B) & _MASK32
    return values ^ (values >> 16)


def gumbel_noise(rows: list[RowSampling], step: int, codebooks: int, vocab: int, device: str) -> torch.Tensor:
    """Gumbel noise ``(rows, codebooks, vocab)``, a pure function of each row's (seed, stream) and ``step``."""
    import torch

    keys = torch.tensor([[row.seed & _MASK32, row.stream & _MASK32] for row in rows], dtype=torch.int64, device=device)
    base = _hash32(_hash32(_hash32(keys[:, 0]) ^ keys[:, 1]) ^ (step & _MASK32))  # (rows,)
    index = torch.arange(codebooks * vocab, dtype=torch.int64, device=device).reshape(codebooks, vocab)
    bits = _hash32(_hash32(base[:, None, None] ^ index[None]) + 0x9E3779B9 & _MASK32)
    uniform = (bits.double() + 0.5) / 2.0**32  # strictly inside (0, 1)
    return (-torch.log(-torch.log(uniform))).float()


def sample(cond: torch.Tensor, uncond: torch.Tensor | None, rows: list[RowSampling], step: int) -> torch.Tensor:
    """Tokens ``(rows, codebooks)`` from logits ``(rows, codebooks, vocab)`` (``uncond`` is None
    when no row uses guidance)."""
    import torch

    scores = cond.float()
    if uncond is not None:
        scale = torch.tensor([row.guidance_scale for row in rows], device=cond.device)[:, None, None]
        guided = uncond.float() + scale * (scores - uncond.float())
        # A scale of exactly 1 keeps the conditional logits bit for bit, as the plain path does.
        scores = torch.where(scale == 1, scores, guided)
    temperature = torch.tensor([row.temperature or 1.0 for row in rows], device=cond.device)[:, None, None]
    scores = scores / temperature
    scores = _top_k(scores, [row.top_k for row in rows])
    scores = _top_p(scores, [row.top_p for row in rows])
    noise = gumbel_noise(rows, step, scores.shape[1], scores.shape[2], str(cond.device))
    greedy = torch.tensor([row.temperature == 0 for row in rows], device=cond.device)[:, None, None]
    return torch.where(greedy, scores, scores + noise).argmax(dim=-1)


def _top_k(scores: torch.Tensor, top_k: list[int]) -> torch.Tensor:
    import torch

    vocab = scores.shape[-1]
    if not any(0 < k < vocab for k in top_k):
        return scores
    ks = torch.tensor([k if 0 < k < vocab else vocab for k in top_k], device=scores.device)
    kth = scores.sort(dim=-1, descending=True).values.gather(-1, (ks - 1)[:, None, None].expand(-1, scores.shape[1], 1))
    return scores.masked_fill(scores < kth, float("-inf"))


def _top_p(scores: torch.Tensor, top_p: list[float]) -> torch.Tensor:
    import torch

    if not any(0 < p < 1 for p in top_p):
        return scores
    ps = torch.tensor([p if 0 < p < 1 else 1.0 for p in top_p], device=scores.device)[:, None, None]
    ordered, order = scores.sort(dim=-1, descending=False)
    cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
    # As transformers does: drop the low tail whose total probability is at most 1 - top_p,
    # always keeping the most likely token.
    drop = cumulative <= (1 - ps)
    drop[..., -1] = False
    return scores.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))

"""Magenta RT speed: the worker's engine against magenta-rt's own `generate` (`make bench-magenta`).

What runs: one Magenta RT 2 model (`random:tiny` by default; `random:mrt2_small` and `random:mrt2_base`
are the published architectures with random weights, for a GPU), loaded and compiled once through the
worker's loading path (`MagentaEngine.load()`), on JAX's default backend. A style is embedded and
tokenised once, as a job does.

- magenta-rt: `MagentaRT2System.generate(conditioning={"musiccoca": tokens}, frames=N, state=...)` in one
  call, the package's own loop (the baseline: what a script using magenta-rt does).
- engine: `generate_frames`, the job's path: one second (25 frames) per call with a progress report,
  the deadline and cancellation checked between seconds.
- time to first audio, warm: a new stream (`new_state(seed)`) to the first frame's samples, and to the
  first second's (what a jam's first chunk waits for).
- loop priming (`/magenta/generate`): SpectroStream-encoding a loop and feeding its codes through the
  model (`encode_loop`, `prime`), per second of loop.
- finetune switch (`/magenta/model/select`): a safetensors checkpoint read and swapped into the compiled
  steps, beside the seconds a model takes to load and compile (what a switch costs without the swap).

Each path runs once to warm up, then `--repeat` times on `--seconds` of audio, alternating which goes
first; the median is reported. Real time is 40 ms per frame (25 frames a second). Exit status 0 whether
or not a target is met (a benchmark reports), 1 when a run failed or returned the wrong length.

    python -m bench.bench_magenta [--model random:tiny] [--seconds 10] [--repeat 3] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES_PER_FRAME = 1920
"""48 kHz / 25 frames a second (soundstage_magenta.system's, without importing JAX at module load)."""

FRAME_MS = 40.0
"""Real time: one 40 ms frame generated per 40 ms."""


def _median_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _versions() -> dict[str, str]:
    out = {}
    for package in ("magenta-rt", "jax", "jaxlib", "flax"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "-"
    return out


def _compare(
    upstream: Callable[[], np.ndarray[Any, Any]],
    ours: Callable[[], np.ndarray[Any, Any]],
    samples: int,
    repeat: int,
    failures: list[str],
) -> dict[str, float]:
    """Median ms per frame of each path, alternating which runs first (after one warm-up run each)."""
    paths = [("magenta-rt", upstream), ("engine", ours)]
    for name, run in paths:
        length = run().shape[0]  # warm-up, and the length check
        if length != samples:
            failures.append(f"{name} returned {length} samples, not {samples}")
    timed: dict[str, list[float]] = {name: [] for name, _ in paths}
    for index in range(repeat):
        for name, run in paths if index % 2 == 0 else paths[::-1]:
            timed[name].append(_median_seconds(run, 1))
    frames = samples / SAMPLES_PER_FRAME
    return {name: statistics.median(values) / frames * 1000 for name, values in timed.items()}


def _first_audio(system: Any, tokens: list[int], count: int, knobs: dict[str, Any], repeat: int) -> float:
    """Milliseconds from a new stream to its first ``count`` frames, warm."""

    def once() -> None:
        system.generate(tokens, count, cfg_musiccoca=3.0, state=system.new_state(1), **knobs)

    once()
    return _median_seconds(once, max(repeat, 3)) * 1000


def _priming(system: Any, tokens: list[int], knobs: dict[str, Any], seconds: float, repeat: int) -> dict[str, float]:
    """What `/magenta/generate` spends on a loop before generating: encoding it, feeding its codes."""
    rate = 48_000
    loop = (np.random.default_rng(0).standard_normal((round(seconds * rate), 2)) * 0.1).astype(np.float32)
    system.encode_loop(loop)  # warm
    encode_ms = _median_seconds(lambda: system.encode_loop(loop), repeat) * 1000
    codes = system.encode_loop(loop)

    def prime() -> None:
        system.prime(codes, tokens, cfg_musiccoca=3.0, state=system.new_state(0), **knobs)

    prime()
    prime_ms = _median_seconds(prime, repeat) * 1000
    return {"encode_ms_per_loop_second": encode_ms / seconds, "prime_ms_per_frame": prime_ms / codes.shape[0]}


def _finetune_switch(system: Any, repeat: int) -> float:
    """Seconds to serve a finetune's weights (`/magenta/model/select`): its safetensors checkpoint read and
    swapped into the compiled steps (``with_weights``); the model's own weights stand in for a finetune."""
    from flax import traverse_util
    from safetensors import numpy as safetensors_numpy

    flat = traverse_util.flatten_dict(system._system._params, sep="/")
    with tempfile.TemporaryDirectory(prefix="bench-magenta-ft-") as folder:
        path = Path(folder) / "checkpoint.safetensors"
        safetensors_numpy.save_file({name: np.asarray(value) for name, value in flat.items()}, str(path))
        system.with_weights(path)  # warm
        return _median_seconds(lambda: system.with_weights(path), repeat)


def _report(figures: dict[str, Any]) -> None:
    per_frame = figures["ms_per_frame"]
    print(
        f"Magenta RT {figures['model']} on {figures['backend']} ({figures['device']}), "
        f"loaded+compiled in {figures['load_and_compile_seconds']:.1f} s"
    )
    print(f"{'path':<12}{'ms/frame':>10}{'x real time':>13}")
    for name in ("magenta-rt", "engine"):
        print(f"{name:<12}{per_frame[name]:>10.2f}{FRAME_MS / per_frame[name]:>13.2f}")
    print(
        f"time to first audio (warm): first frame {figures['first_frame_ms']:.0f} ms, "
        f"first second {figures['first_second_ms']:.0f} ms"
    )
    priming = figures["loop_priming"]
    if priming is not None:
        print(
            f"loop priming: encode {priming['encode_ms_per_loop_second']:.1f} ms per loop second, "
            f"prime {priming['prime_ms_per_frame']:.2f} ms per frame"
        )
    print(
        f"finetune switch: weights swapped in {figures['finetune_switch_ms']:.0f} ms "
        f"(against {figures['load_and_compile_seconds']:.1f} s to load and compile a model)"
    )
    for failure in figures["failures"]:
        print(f"FAILED: {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random:tiny")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio generated per timed run")
    parser.add_argument("--loop-seconds", type=float, default=8.0, help="loop length for the priming figure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None, help="model cache (default: a temporary folder)")
    parser.add_argument("--json", nargs="?", const="-", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    import jax
    from magenta_rt.config import MUSICCOCA
    from soundstage_magenta.engine import MagentaEngine
    from soundstage_magenta.job import generate_frames
    from soundstage_magenta.system import FRAMES_PER_SECOND

    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="bench-magenta-"))
    started = time.perf_counter()
    engine = MagentaEngine(args.model, cache_dir=cache)
    system = engine.load()
    load_seconds = time.perf_counter() - started
    tokens = system.style_tokens(system.embed_text("deep house with a warm bassline"))
    frames = round(args.seconds * FRAMES_PER_SECOND)
    knobs = {"temperature": 1.3, "top_k": 40}

    def upstream() -> np.ndarray[Any, Any]:
        waveform, _ = system._system.generate(
            conditioning={MUSICCOCA.key: tokens},
            cfg_scales={"musiccoca": 3.0},
            frames=frames,
            state=system.new_state(0),
            **knobs,
        )
        return np.asarray(waveform.samples)

    def ours() -> np.ndarray[Any, Any]:
        return generate_frames(
            system,
            tokens,
            frames,
            system.new_state(0),
            guidance_weight=3.0,
            report=lambda *_args, **_kwargs: None,  # type: ignore[arg-type]
            **knobs,
        )

    failures: list[str] = []
    per_frame = _compare(upstream, ours, frames * SAMPLES_PER_FRAME, args.repeat, failures)
    first_frame_ms = _first_audio(system, tokens, 1, knobs, args.repeat)
    first_second_ms = _first_audio(system, tokens, FRAMES_PER_SECOND, knobs, args.repeat)
    priming = _priming(system, tokens, knobs, args.loop_seconds, args.repeat) if system.loops_supported else None
    switch_seconds = _finetune_switch(system, args.repeat)

    devices = jax.devices()
    figures: dict[str, Any] = {
        "model": args.model,
        "backend": jax.default_backend(),
        "device": str(devices[0].device_kind if devices else "-"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "versions": _versions(),
        "load_and_compile_seconds": round(load_seconds, 2),
        "seconds_per_run": args.seconds,
        "ms_per_frame": {name: round(value, 2) for name, value in per_frame.items()},
        "real_time_factor": {name: round(FRAME_MS / value, 2) for name, value in per_frame.items()},
        "engine_vs_magenta_rt": round(per_frame["magenta-rt"] / per_frame["engine"], 3),
        "first_frame_ms": round(first_frame_ms, 1),
        "first_second_ms": round(first_second_ms, 1),
        "loop_priming": None if priming is None else {k: round(v, 2) for k, v in priming.items()},
        "finetune_switch_ms": round(switch_seconds * 1000, 1),
        "failures": failures,
    }
    _report(figures)
    if args.json is not None:
        text = json.dumps(figures, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

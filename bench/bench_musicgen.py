"""MusicGen decoding speed: Soundstage's engine against a plain transformers `generate` (`make bench-musicgen`).

What runs: one MusicGen model (`random:small` by default: the exact musicgen-small
architecture with random weights, built offline into the model cache the first time),
loaded once through the worker's own loading path, on the device the worker would pick
(`--device auto`). Every job asks for `--duration` seconds of audio with classifier-free
guidance 3.0, top-k 250 and temperature 1, so each decoder step runs two sequences per
job (with and without the text), in both paths.

- engine: `MusicgenEngine(mode="batched", max_batch=8)`; N jobs are submitted at once from
  N threads, each calling `engine.generate(GenerationParams(...))`, as the worker's Celery
  threads pool does; the engine decodes whatever is waiting as one batch.
- plain generate, sequential: the same N threads call transformers' own
  `model.generate(..., do_sample=True, guidance_scale=3.0, max_new_tokens=steps)` on the
  same loaded model, one at a time (a lock): how a plain server serves concurrent requests.
- plain generate, one batch: the N prompts handed to ONE `generate` call; plain
  `generate`'s best case, which cannot mix durations, settings or seeds across jobs.

Each path is warmed up before it is timed. Batch 1 is the median of `--repeats` runs, the
engine and plain `generate` alternating. Exit status 0 whether or not a target is met (a
benchmark reports), 1 when a job failed or returned the wrong amount of audio.

    python -m bench.bench_musicgen [--model random:small] [--duration 2] [--concurrency 1,4,8]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from soundstage_musicgen.engine import GenerationParams, MusicgenEngine
from soundstage_musicgen.generation import window_steps
from soundstage_musicgen.loading import LoadedModel
from soundstage_musicgen.windows import WINDOW_FRAMES

GUIDANCE = 3.0
TOP_K = 250
TARGET_BATCH1_RATIO = 1.0  # engine ms/step <= plain generate's (CPU)
TARGET_CONCURRENT_JOBS = 4
TARGET_CONCURRENT_SPEEDUP = 1.4  # engine(4 jobs) >= 1.4x plain generate run one after another (CPU)
GPU_TARGET_REALTIME = 20.0  # batch 1: >= 20 s of audio per wall second (musicgen-small)
GPU_TARGET_JOBS, GPU_TARGET_DURATION, GPU_TARGET_AGGREGATE = 16, 10.0, 150.0  # 16 x 10 s jobs: >= 150 audio-s/s
PROMPTS = (
    "gentle acoustic guitar music for family memories",
    "upbeat synthwave with a driving bassline",
    "slow ambient pads over distant rain",
    "jazzy lo-fi hip hop beat with vinyl crackle",
    "epic orchestral trailer music with taiko drums",
    "calm piano and strings, melancholic mood",
    "energetic rock drums with distorted bass",
    "dark electronic pulse with deep synth bass",
)
ENGINE, SEQUENTIAL, ONE_BATCH = "engine (batched)", "plain generate, sequential", "plain generate, one batch *"


@dataclass
class Run:
    """One timed run: `jobs` jobs of one path, submitted at once."""

    path: str
    jobs: int
    wall_s: float
    cpu_s: float  # CPU time of this process (all threads) during the run
    audio_s: float  # seconds of audio the jobs returned, all together
    passes: int  # decoder forward passes
    sequence_steps: int  # sum over passes of the sequences decoded (CFG counts two per job)
    batches: list[int] | None = None  # engine: jobs in each batch the scheduler decoded

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s


class BenchmarkError(Exception):
    pass


class DecoderCounter:
    """Counts decoder forward passes and the sequences in each (a forward hook; negligible cost)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._codebooks = loaded.num_codebooks
        self.passes = 0
        self.sequence_steps = 0
        self.starts: list[int] = []  # sequences in each pass that starts a new decode (no KV cache yet)
        loaded.model.decoder.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        sequences = int(ids.shape[0]) // self._codebooks  # input rows are (sequence, codebook) pairs
        self.passes += 1
        self.sequence_steps += sequences
        if kwargs.get("past_key_values") is None:
            self.starts.append(sequences)

    def snapshot(self) -> tuple[int, int]:
        return self.passes, self.sequence_steps


class Bench:
    def __init__(self, engine: MusicgenEngine, duration_s: float) -> None:
        self.engine = engine
        self.loaded = engine._ensure_loaded()  # the engine's own model: both paths use the same weights
        self.counter = DecoderCounter(self.loaded)
        self.duration_s = duration_s
        self.seed = 0

    def steps(self, duration_s: float) -> int:
        """Decoder steps for one job: the engine's own count (frames + codebook delay)."""
        frames = max(math.ceil(duration_s * self.loaded.frame_rate), self.loaded.codebooks_per_channel)
        return window_steps(self.loaded, frames)

    def timed(self, path: str, jobs: int, duration_s: float, work: Callable[[list[int]], list[int]]) -> Run:
        """Run `work` over `jobs` seeds; it returns the samples each job produced (checked here)."""
        seeds = list(range(self.seed, self.seed + jobs))
        self.seed += jobs
        passes, sequence_steps = self.counter.snapshot()
        starts = len(self.counter.starts)
        started_cpu, started = time.process_time(), time.perf_counter()
        lengths = work(seeds)
        wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        wanted = round(duration_s * self.loaded.sample_rate)
        if lengths != [wanted] * jobs:
            raise BenchmarkError(f"{path}: jobs returned {lengths} samples, expected {wanted} each")
        passes_now, sequence_steps_now = self.counter.snapshot()
        return Run(
            path=path,
            jobs=jobs,
            wall_s=wall,
            cpu_s=cpu,
            audio_s=sum(lengths) / self.loaded.sample_rate,
            passes=passes_now - passes,
            sequence_steps=sequence_steps_now - sequence_steps,
            # every job uses guidance: two sequences per job
            batches=[n // 2 for n in self.counter.starts[starts:]] if path == ENGINE else None,
        )

    def engine_jobs(self, jobs: int, duration_s: float) -> Run:
        def work(seeds: list[int]) -> list[int]:
            def job(seed: int) -> int:
                params = GenerationParams(
                    prompt=PROMPTS[seed % len(PROMPTS)], duration_s=duration_s, guidance_scale=GUIDANCE, seed=seed
                )
                return int(self.engine.generate(params)[0].samples.shape[-1])

            return in_threads(job, seeds)

        return self.timed(ENGINE, jobs, duration_s, work)

    def plain_sequential(self, jobs: int, duration_s: float) -> Run:
        queue = threading.Lock()  # a plain server runs one generate at a time; the others wait

        def work(seeds: list[int]) -> list[int]:
            def job(seed: int) -> int:
                with queue:
                    return self._plain_generate([seed], duration_s)[0]

            return in_threads(job, seeds)

        return self.timed(SEQUENTIAL, jobs, duration_s, work)

    def plain_one_batch(self, jobs: int, duration_s: float) -> Run:
        return self.timed(ONE_BATCH, jobs, duration_s, lambda seeds: self._plain_generate(seeds, duration_s))

    def _plain_generate(self, seeds: list[int], duration_s: float) -> list[int]:
        """One transformers `generate` call for these jobs' prompts; samples per job."""
        import torch

        prompts = [PROMPTS[seed % len(PROMPTS)] for seed in seeds]
        inputs = self.loaded.processor(text=prompts, padding=True, return_tensors="pt").to(self.loaded.device)
        torch.manual_seed(seeds[0])
        with torch.inference_mode():
            audio = self.loaded.model.generate(
                **inputs,
                do_sample=True,
                guidance_scale=GUIDANCE,
                top_k=TOP_K,
                max_new_tokens=self.steps(duration_s),
            )
        wanted = round(duration_s * self.loaded.sample_rate)
        return [min(wanted, int(take.shape[-1])) for take in audio.cpu()]  # generate returns whole frames


def in_threads(job: Callable[[int], int], seeds: list[int]) -> list[int]:
    """One thread per seed, released together (a barrier); results in seed order; re-raises a job's error."""
    results: list[int] = [0] * len(seeds)
    errors: list[BaseException] = []
    start_line = threading.Barrier(len(seeds))

    def run(index: int) -> None:
        start_line.wait()
        try:
            results[index] = job(seeds[index])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(seeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@contextmanager
def profiler(output: Path) -> Iterator[None]:
    """Sample this process with py-spy (collapsed stacks, all threads) while the block runs."""
    py_spy = Path(sys.executable).with_name("py-spy")  # `pip install py-spy` into the venv
    command = [str(py_spy), "record", "--pid", str(os.getpid()), "--format", "raw", "--rate", "200"]
    spy = subprocess.Popen([*command, "--output", str(output)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches asynchronously; samples before that would be lost
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
        print(f"py-spy profile: {output}")


def machine(loaded: LoadedModel) -> list[tuple[str, str]]:
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    device = loaded.device
    if device == "cuda":
        device += f" ({torch.cuda.get_device_name()})"
    torch_version = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return [
        ("date", date.today().isoformat()),
        ("cpu", f"{cpu}, {len(os.sched_getaffinity(0))} cores; device {device}"),
        ("os", f"{platform.system()} {platform.release()}, Python {platform.python_version()}"),
        ("software", f"{torch_version}, transformers {metadata.version('transformers')}"),
    ]


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def report_batch1(bench: Bench, engine: list[Run], plain: list[Run]) -> None:
    steps = bench.steps(bench.duration_s)
    print(f"\nBatch 1: one job at a time, median of {len(engine)} runs")
    header = f"{'path':30} {'ms/step':>8} {'min-max':>11} {'s per audio-s':>14} {'CPU-s per audio-s':>18} {'passes':>7}"
    print(header + "\n" + "-" * len(header))
    for label, runs in ((ENGINE, engine), ("plain generate", plain)):
        walls = [run.wall_s * 1000 / steps for run in runs]
        spread = f"{min(walls):.1f}-{max(walls):.1f}"
        median = statistics.median(run.wall_s for run in runs)
        cpu = statistics.median(run.cpu_s / run.audio_s for run in runs)
        print(
            f"{label:30} {statistics.median(walls):>8.1f} {spread:>11} {median / runs[0].audio_s:>14.2f} "
            f"{cpu:>18.2f} {runs[0].passes:>7}"
        )
    ratio = statistics.median(r.wall_s for r in engine) / statistics.median(r.wall_s for r in plain)
    met = ratio <= TARGET_BATCH1_RATIO
    print(f"engine / plain generate time per step: {ratio:.3f}  (target <= {TARGET_BATCH1_RATIO:g}: {verdict(met)})")
    if bench.loaded.device == "cuda":
        realtime = bench.duration_s / statistics.median(r.wall_s for r in engine)
        met = realtime >= GPU_TARGET_REALTIME
        print(f"engine batch 1: {realtime:.1f}x real time  (GPU target >= {GPU_TARGET_REALTIME:g}x: {verdict(met)})")


def report_concurrent(bench: Bench, runs: list[Run]) -> None:
    print(f"\nConcurrent jobs: N jobs of {bench.duration_s:g} s submitted at once; aggregate audio-s per wall-s")
    header = (
        f"{'jobs':>4}  {'path':30} {'wall s':>7} {'audio s':>8} {'audio-s/s':>10} {'vs seq':>7} "
        f"{'passes':>7} {'seq-steps':>10}  batches"
    )
    print(header + "\n" + "-" * len(header))
    sequential = {run.jobs: run for run in runs if run.path == SEQUENTIAL}
    for run in runs:
        base = sequential.get(run.jobs)
        versus = f"{run.throughput / base.throughput:.2f}x" if base else "-"
        batches = "+".join(map(str, run.batches)) if run.batches else "-"
        print(
            f"{run.jobs:>4}  {run.path:30} {run.wall_s:>7.1f} {run.audio_s:>8.1f} {run.throughput:>10.3f} "
            f"{versus:>7} {run.passes:>7} {run.sequence_steps:>10}  {batches}"
        )
    if any(run.path == ONE_BATCH for run in runs):
        print(
            "* one generate call given all N prompts: plain generate's best case; it cannot mix durations,\n"
            "  settings or seeds across jobs, and a job arriving during the call waits for all of it."
        )
    print(
        "passes: decoder forward passes; seq-steps: sequences decoded over all passes (2 per job per step\n"
        "with guidance); batches: jobs in each batch the engine's scheduler decoded, in order."
    )
    engine = {run.jobs: run for run in runs if run.path == ENGINE}
    n = TARGET_CONCURRENT_JOBS
    if n in engine and n in sequential:
        speedup = engine[n].throughput / sequential[n].throughput
        met = speedup >= TARGET_CONCURRENT_SPEEDUP
        print(
            f"engine({n}) / plain sequential({n}): {speedup:.2f}x  "
            f"(target >= {TARGET_CONCURRENT_SPEEDUP:g}x: {verdict(met)})"
        )
    if bench.loaded.device == "cuda":
        gpu = [r for r in engine.values() if r.jobs >= GPU_TARGET_JOBS and bench.duration_s >= GPU_TARGET_DURATION]
        if gpu:
            met = gpu[0].throughput >= GPU_TARGET_AGGREGATE
            print(f"GPU target: {GPU_TARGET_JOBS} jobs of 10 s >= {GPU_TARGET_AGGREGATE:g} audio-s/s: {verdict(met)}")
        else:
            hint = f"--duration 10 --concurrency 1,{GPU_TARGET_JOBS} --max-batch {GPU_TARGET_JOBS}"
            print(f"GPU target ({GPU_TARGET_JOBS} jobs of 10 s) not measured; run with {hint}")


def measure(bench: Bench, args: argparse.Namespace) -> tuple[list[Run], list[Run], list[Run]]:
    """Batch-1 runs of the engine and of plain generate, then the concurrent rows."""
    warm = min(args.duration, 0.5)  # the first call at a new batch size is slower; the length does not matter
    print(f"warming up: a {warm:g} s job on each path, and again at each concurrency")
    bench.engine_jobs(1, warm)
    bench.plain_sequential(1, warm)
    if args.profile:  # untimed: py-spy shares the cores
        with profiler(args.profile.with_name(args.profile.name + ".engine.txt")):
            bench.engine_jobs(1, args.duration)
        with profiler(args.profile.with_name(args.profile.name + ".plain.txt")):
            bench.plain_sequential(1, args.duration)
    engine_runs: list[Run] = []
    plain_runs: list[Run] = []
    for repeat in range(args.repeats):
        print(f"batch 1, run {repeat + 1}/{args.repeats}")
        engine_runs.append(bench.engine_jobs(1, args.duration))
        plain_runs.append(bench.plain_sequential(1, args.duration))
    concurrent: list[Run] = []
    for jobs in args.concurrency:
        if jobs == 1:
            concurrent += [_median_run(engine_runs), _median_run(plain_runs)]
            continue
        print(f"{jobs} concurrent jobs")
        bench.engine_jobs(jobs, warm)
        bench.plain_one_batch(jobs, warm)
        concurrent += [
            bench.engine_jobs(jobs, args.duration),
            bench.plain_sequential(jobs, args.duration),
            bench.plain_one_batch(jobs, args.duration),
        ]
    return engine_runs, plain_runs, concurrent


def benchmark(args: argparse.Namespace) -> int:
    engine = MusicgenEngine(args.model, args.cache_dir, args.device, mode="batched", max_batch=args.max_batch)
    started = time.perf_counter()
    bench = Bench(engine, args.duration)
    loaded, steps = bench.loaded, bench.steps(args.duration)
    print(f"loaded {args.model} on {loaded.device} in {time.perf_counter() - started:.1f} s")
    info, load_before = machine(loaded), os.getloadavg()
    engine_runs, plain_runs, concurrent = measure(bench, args)
    print(f"\nMusicGen decoding: {args.model} on {loaded.device}, {args.duration:g} s of audio per job")
    frames = steps - loaded.codebooks_per_channel + 1
    print(f"  work      {frames} frames + {steps - frames} delay steps = {steps} decoder steps per job; guidance")
    print(f"            {GUIDANCE:g} (2 sequences per job per step), top-k {TOP_K}, temperature 1; engine")
    print(f"            max batch {args.max_batch}; audio decoded by the codec and returned in both paths")
    for key, value in info:
        print(f"  {key:9} {value}")
    loads = "; ".join(", ".join(f"{v:.2f}" for v in load) for load in (load_before, os.getloadavg()))
    print(f"  load avg  {loads} (1/5/15 min, before; after): other work on the machine slows every row")
    report_batch1(bench, engine_runs, plain_runs)
    report_concurrent(bench, concurrent)
    return 0


def _median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda run: run.wall_s)[len(runs) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_musicgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random:small", help="model ref (default random:small; random:tiny)")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio per job (default 2)")
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent job counts (default 1,4,8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batch-1 runs per path (default 3)")
    parser.add_argument("--max-batch", type=int, default=8, help="engine max batch, MUSICGEN_MAX_BATCH (default 8)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    default_cache = Path(os.environ.get("MODEL_CACHE_DIR") or Path(os.environ.get("DATA_DIR", "data")) / "models")
    parser.add_argument("--cache-dir", type=Path, default=default_cache, help=f"model cache (default {default_cache})")
    parser.add_argument(
        "--profile", type=Path, help="py-spy profiles of an extra untimed batch-1 job: FILE.engine.txt, FILE.plain.txt"
    )
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(n) for n in args.concurrency.split(",")]
    except ValueError:
        parser.error("--concurrency takes comma-separated job counts, e.g. 1,4,8")
    if min(args.concurrency) < 1 or args.repeats < 1 or args.max_batch < 1:
        parser.error("--concurrency, --repeats and --max-batch must be at least 1")
    if not 0 < args.duration <= WINDOW_FRAMES / 50:
        parser.error("--duration must be within (0, 30] seconds: one window, so plain generate does the same work")
    try:
        return benchmark(args)
    except BenchmarkError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

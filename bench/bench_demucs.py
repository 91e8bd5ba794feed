"""Demucs separation speed and memory: the worker's engine against demucs' `apply_model` (`make bench-demucs`).

What runs: one Demucs model (`random:htdemucs` by default: the full-size htdemucs architecture,
41.5 M parameters, with random weights, built offline into the model cache the first time), loaded
once through the worker's loading path (`DemucsEngine.load()`), on the device the worker would pick
(`--device auto`). The input is a synthetic stereo 44.1 kHz mix written as a 16-bit WAV and decoded
with the worker's own decoder; random weights make the content irrelevant to speed.

- engine: `DemucsEngine.separate(mix, SeparationSettings(shifts, overlap, seed=0))`, the worker's
  default batching (1 segment per model call on CPU, up to 8 on CUDA); it normalises the mix by the
  mono reference's mean/std and de-normalises the stems, as `demucs.separate` does. The streamed
  blocks are kept in a list, so both paths end with every stem in memory.
- apply_model: what `demucs.api.Separator.separate_tensor` does, on the same loaded model: the same
  normalisation, `apply_model(model, mix[None], shifts, split=True, overlap, segment=None,
  device=...)` with `random.seed(0)` (so its shift offsets are the engine's), then `out * std + mean`
  as a numpy array. The full mix stays on the CPU and only segments go to the device (demucs' CLI).

Speed: one warm-up call per path on a short input, then `--repeat` timed runs per path on the
`--seconds` input, alternating which path goes first; wall time is measured in this process around
the call only and the median is reported. The first run's outputs are compared (same work, same
numbers), and a forward hook counts the model calls and segments each path runs.
Memory: each figure is the peak RSS (`VmHWM`) of a fresh child process that loads the model, decodes
the input and runs ONE separation (and `torch.cuda.max_memory_allocated` on CUDA), so neither path's
allocations count against the other's. The long input (`--long-seconds`, 10 minutes by default) goes
through the worker's job path: decode -> engine -> `StemWriter` writing 4 WAV stems to a temporary
folder, as `soundstage_demucs.job.run_separate` wires them (`--direct-long` also runs apply_model on
it, which holds the whole track and its stems in memory).
On CUDA (or with `--concurrent N`), N jobs also run at once through ONE engine from N threads, as
the worker's threads pool runs them, and their aggregate real-time factor is printed.

Exit status 0 whether or not a target is met (a benchmark reports), 1 when a run failed, returned
the wrong length, or the two paths' outputs differ.

    python -m bench.bench_demucs [--seconds 60] [--long-seconds 600] [--repeat 3] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from soundstage.errors import AppError

RATE = 44100
STEMS = ("drums", "bass", "other", "vocals")
SEED = 0
GIB, MIB = 1024**3, 1024**2
TARGET_RATIO = 1.10  # engine wall time <= 1.10x apply_model's
TARGET_LONG_RSS = 3 * GIB  # 10-minute input through engine + StemWriter: peak RSS <= 3 GiB
GPU_TARGET_REALTIME = 50.0  # htdemucs on a GPU: >= 50x real time (one job)
GPU_CONCURRENT_JOBS = 4
MAX_RELATIVE_DIFF = 1e-2  # engine vs apply_model: max |diff| / max |stem|; a wrong setting gives ~1
RESULT_PREFIX = "BENCH_DEMUCS_RESULT "
ROOT = Path(__file__).resolve().parents[1]
ENGINE, DIRECT, JOB = "engine", "apply_model", "engine + StemWriter"


class BenchmarkError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    """What both paths and every child process share."""

    model: str
    cache_dir: str
    device: str
    shifts: int
    overlap: float


# --- input -------------------------------------------------------------------------------------


def write_input(path: Path, seconds: float, seed: int = 1) -> Path:
    """A deterministic stereo 44.1 kHz 16-bit WAV: two chords plus noise, written 10 s at a time."""
    rng = np.random.default_rng(seed)
    frames, block = round(seconds * RATE), 10 * RATE
    with sf.SoundFile(path, "w", RATE, 2, "PCM_16", format="WAV") as file:
        for start in range(0, frames, block):
            t = np.arange(start, min(start + block, frames)) / RATE
            left = 0.15 * (np.sin(2 * np.pi * 220 * t) + np.sin(2 * np.pi * 277.2 * t))
            right = 0.15 * (np.sin(2 * np.pi * 329.6 * t) + np.sin(2 * np.pi * 110 * t))
            noise = 0.05 * rng.standard_normal((2, t.size))
            file.write((np.stack([left, right]) + noise).T.astype(np.float32))
    return path


def read_input(path: Path) -> np.ndarray:
    """The mix as the worker decodes it: float32 (2, n) at 44.1 kHz."""
    from soundstage.audio import decode_audio

    decoded = decode_audio(path.read_bytes())
    if decoded.sample_rate != RATE or decoded.channels != 2:
        raise BenchmarkError(f"{path}: expected stereo {RATE} Hz, got {decoded.channels} ch {decoded.sample_rate} Hz")
    return decoded.samples


# --- the two paths -----------------------------------------------------------------------------


def open_engine(config: Config) -> Any:
    from soundstage_demucs.engine import DemucsEngine

    engine = DemucsEngine(
        config.model, model_dir=None, cache_dir=Path(config.cache_dir), device=config.device, batch_segments=0
    )
    engine.load()
    return engine


def run_engine(engine: Any, mix: np.ndarray, config: Config, seed: int = SEED) -> list[np.ndarray]:
    """The engine's stems, (sources, channels, n) blocks in order (kept: both paths end with every stem)."""
    from soundstage_demucs.engine import SeparationSettings

    blocks: list[np.ndarray] = []
    settings = SeparationSettings(shifts=config.shifts, overlap=config.overlap, seed=seed, normalize=True)
    engine.separate(mix, settings, blocks.append, lambda done, total: None)
    return blocks


def run_direct(loaded: Any, mix: np.ndarray, config: Config) -> np.ndarray:
    """demucs.api.Separator.separate_tensor on the same model: normalise, apply_model, de-normalise."""
    import torch
    from demucs.apply import apply_model

    wav = torch.from_numpy(mix)
    reference = wav.mean(0)
    mean, std = reference.mean(), reference.std() + 1e-8
    random.seed(SEED)  # apply_model draws its shifts from the global generator; the engine from Random(seed)
    out = apply_model(
        loaded.model,
        ((wav - mean) / std)[None],
        shifts=config.shifts,
        split=True,
        overlap=config.overlap,
        segment=None,
        device=loaded.device,
    )
    stems: np.ndarray = (out[0] * std + mean).numpy()
    return stems


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def timed(device: str, work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, all threads, result) of one call."""
    synchronize(device)
    started_cpu, started = time.process_time(), time.perf_counter()
    result = work()
    synchronize(device)
    return time.perf_counter() - started, time.process_time() - started_cpu, result


class CallCounter:
    """Model calls and segments (batch rows) per path: a forward hook on every sub-model."""

    def __init__(self, loaded: Any) -> None:
        self.calls = 0
        self.rows = 0
        for model in loaded.sub_models:
            model.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: tuple[Any, ...], output: Any) -> None:
        self.calls += 1
        self.rows += int(args[0].shape[0])

    def since(self, calls: int, rows: int) -> tuple[int, int]:
        return self.calls - calls, self.rows - rows


# --- measurements in this process --------------------------------------------------------------


def measure_speed(engine: Any, mix: np.ndarray, warm: np.ndarray, config: Config, repeat: int) -> dict[str, Any]:
    """Warm-up per path, then `repeat` timed runs per path, alternating which goes first."""
    loaded = engine.load()
    counter = CallCounter(loaded)
    paths: dict[str, Callable[[np.ndarray], Any]] = {
        ENGINE: lambda audio: run_engine(engine, audio, config),
        DIRECT: lambda audio: run_direct(loaded, audio, config),
    }
    log(f"warming up: one {warm.shape[-1] / RATE:g} s separation per path")
    for work in paths.values():
        work(warm)
    walls: dict[str, list[float]] = {ENGINE: [], DIRECT: []}
    cpu: dict[str, list[float]] = {ENGINE: [], DIRECT: []}
    work_done: dict[str, tuple[int, int]] = {}
    outputs: dict[str, np.ndarray] = {}
    for index in range(repeat):
        order = (ENGINE, DIRECT) if index % 2 == 0 else (DIRECT, ENGINE)
        for path in order:
            before = counter.calls, counter.rows
            wall, cpu_s, out = timed(loaded.device, lambda work=paths[path]: work(mix))
            log(
                f"run {index + 1}/{repeat}: {path} on {mix.shape[-1] / RATE:g} s: {wall:.2f} s wall, "
                f"{cpu_s:.1f} CPU-s, load average {os.getloadavg()[0]:.2f}"
            )
            walls[path].append(wall)
            cpu[path].append(cpu_s)
            work_done[path] = counter.since(*before)
            if index == 0:
                outputs[path] = np.concatenate(out, axis=-1) if path == ENGINE else out
        if index == 0:
            comparison = compare(outputs[ENGINE], outputs[DIRECT], mix.shape[-1])
            outputs.clear()
    return {"walls": walls, "cpu_s": cpu, "model_calls": work_done, "comparison": comparison}


def compare(engine_out: np.ndarray, direct_out: np.ndarray, frames: int) -> dict[str, float]:
    for name, out in ((ENGINE, engine_out), (DIRECT, direct_out)):
        if out.shape != (len(STEMS), 2, frames):
            raise BenchmarkError(f"{name} returned stems of shape {out.shape}, expected {(len(STEMS), 2, frames)}")
    diff = float(np.max(np.abs(engine_out - direct_out)))
    scale = float(np.max(np.abs(direct_out)))
    result = {"max_abs_diff": diff, "max_abs_stem": scale, "relative": diff / max(scale, 1e-12)}
    if not np.isfinite(diff) or result["relative"] > MAX_RELATIVE_DIFF:
        raise BenchmarkError(f"the engine's stems differ from apply_model's: {result}")
    return result


def measure_concurrent(engine: Any, mix: np.ndarray, warm: np.ndarray, config: Config, jobs: int) -> dict[str, Any]:
    """`jobs` separations of `mix` at once through ONE engine, one thread each (the worker's threads pool)."""
    log(f"{jobs} concurrent jobs: warm-up on {warm.shape[-1] / RATE:g} s, then {mix.shape[-1] / RATE:g} s each")
    in_threads(lambda seed: run_engine(engine, warm, config, seed), jobs)
    batcher = engine.batcher
    calls, shared = batcher.calls, batcher.shared_calls
    wall = in_threads(lambda seed: run_engine(engine, mix, config, seed), jobs)
    audio = jobs * mix.shape[-1] / RATE
    return {
        "jobs": jobs,
        "wall_s": wall,
        "audio_s": audio,
        "aggregate_x_realtime": audio / wall,
        "model_calls": batcher.calls - calls,
        "shared_calls": batcher.shared_calls - shared,
        "max_rows": batcher.max_rows,
    }


def in_threads(job: Callable[[int], list[np.ndarray]], jobs: int) -> float:
    """Run job(seed) for `jobs` seeds in threads released together; wall seconds until the last ends."""
    errors: list[BaseException] = []
    frames: list[int] = []
    start_line = threading.Barrier(jobs + 1)

    def run(seed: int) -> None:
        start_line.wait()
        try:
            frames.append(sum(block.shape[-1] for block in job(seed)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(SEED + index,)) for index in range(jobs)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    if len(set(frames)) != 1:
        raise BenchmarkError(f"concurrent jobs returned different lengths: {frames}")
    return wall


# --- measurements in a fresh child process -----------------------------------------------------


def memory_status(field: str) -> int:
    """VmHWM (peak) or VmRSS of this process in bytes (Linux); else ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_main(spec: dict[str, Any]) -> int:
    """In a fresh process: load, decode, run ONE separation, print its figures as one JSON line."""
    import torch

    config = Config(**spec["config"])
    engine = open_engine(config)
    loaded = engine.load()
    report: dict[str, Any] = {"mode": spec["mode"], "rss_loaded": memory_status("VmRSS")}
    path = Path(spec["input"])
    if spec["mode"] == JOB:
        report.update(separate_job(engine, path, config))
    else:
        mix = read_input(path)
        report["rss_input"] = memory_status("VmRSS")
        if spec["mode"] == ENGINE:
            report["wall_s"], _, out = timed(loaded.device, lambda: run_engine(engine, mix, config))
        else:
            report["wall_s"], _, out = timed(loaded.device, lambda: run_direct(loaded, mix, config))
        frames = sum(block.shape[-1] for block in out) if spec["mode"] == ENGINE else out.shape[-1]
        if frames != mix.shape[-1]:
            raise BenchmarkError(f"{spec['mode']}: {frames} frames of stems for {mix.shape[-1]} of input")
        report["frames"] = frames
    report["peak_rss"] = memory_status("VmHWM")
    report["cuda_peak"] = torch.cuda.max_memory_allocated() if loaded.device == "cuda" else None
    print(RESULT_PREFIX + json.dumps(report), flush=True)
    return 0


def separate_job(engine: Any, path: Path, config: Config) -> dict[str, Any]:
    """The worker's job path (`job.run_separate`) minus the database and storage: decode the stored
    bytes, engine.separate streaming into a StemWriter that writes 4 WAV stems to a temporary folder."""
    from soundstage.audio import decode_audio, resample, to_channels
    from soundstage.schemas.common import AudioFormat
    from soundstage_demucs.engine import SeparationSettings
    from soundstage_demucs.stems import StemWriter

    info = engine.info
    decoded = decode_audio(path.read_bytes())
    out_rate, out_channels = decoded.sample_rate, info.audio_channels
    mix = resample(to_channels(decoded.samples, info.audio_channels), decoded.sample_rate, info.sample_rate)
    expected = round(decoded.frames * out_rate / decoded.sample_rate)
    del decoded
    report: dict[str, Any] = {"rss_input": memory_status("VmRSS")}
    with tempfile.TemporaryDirectory(prefix="bench-demucs-") as folder:
        writer = StemWriter(
            Path(folder),
            stems=STEMS,
            sources=info.sources,
            model_rate=info.sample_rate,
            out_rate=out_rate,
            out_channels=out_channels,
            fmt=AudioFormat.WAV,
            expected_frames=expected,
        )
        settings = SeparationSettings(
            shifts=config.shifts, overlap=config.overlap, seed=SEED, needed_sources=list(info.sources)
        )
        started = time.perf_counter()
        try:
            engine.separate(mix, settings, writer.write, lambda done, total: None)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        report["wall_s"] = time.perf_counter() - started
        for stem in written:
            found = sf.info(str(stem.path))
            if (found.frames, found.channels, found.samplerate) != (expected, out_channels, out_rate):
                raise BenchmarkError(f"{stem.stem}: wrote {found.frames} frames x {found.channels} ch, not {expected}")
        report["frames"] = expected
        report["stem_bytes"] = sum(stem.path.stat().st_size for stem in written)
    return report


def in_child(mode: str, path: Path, config: Config) -> dict[str, Any]:
    log(f"fresh process: {mode} on {sf.info(str(path)).duration:g} s")
    spec = json.dumps({"mode": mode, "input": str(path), "config": asdict(config)})
    command = [sys.executable, "-m", "bench.bench_demucs", "--child", spec]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(f"the {mode} child process failed (exit status {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return result


# --- report ------------------------------------------------------------------------------------

_LOG = sys.stdout


def log(message: str = "") -> None:
    print(message, file=_LOG, flush=True)


def machine(loaded: Any) -> dict[str, str]:
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    device = loaded.device + (f" ({torch.cuda.get_device_name()})" if loaded.device == "cuda" else "")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return {
        "date": date.today().isoformat(),
        "cpu": f"{cpu}, nproc {len(os.sched_getaffinity(0))}, {memory:.1f} GiB memory; device {device}",
        "os": f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "software": f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"demucs {metadata.version('demucs')}",
    }


def target(value: float, limit: float, *, at_most: bool) -> dict[str, Any]:
    met = value <= limit if at_most else value >= limit
    return {"value": value, "target": f"{'<=' if at_most else '>='} {limit}", "met": met}


def summarise(results: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Medians, ratios and target verdicts from the raw figures."""
    speed = results["speed"]
    median = {path: statistics.median(speed["walls"][path]) for path in (ENGINE, DIRECT)}
    summary: dict[str, Any] = {
        "median_wall_s": median,
        "median_cpu_s": {path: statistics.median(speed["cpu_s"][path]) for path in (ENGINE, DIRECT)},
        "x_realtime": {path: seconds / wall for path, wall in median.items()},
        "targets": {"engine_over_direct_wall": target(median[ENGINE] / median[DIRECT], TARGET_RATIO, at_most=True)},
    }
    if "long" in results:
        summary["targets"]["long_peak_rss_bytes"] = target(results["long"]["peak_rss"], TARGET_LONG_RSS, at_most=True)
    if results["device"] == "cuda":
        summary["targets"]["gpu_x_realtime"] = target(seconds / median[ENGINE], GPU_TARGET_REALTIME, at_most=False)
    return summary


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    summary, config, cuda = results["summary"], results["config"], results["device"] == "cuda"
    log(f"\nDemucs separation: {config['model']} on {results['device']}, {args.seconds:g} s of stereo 44.1 kHz")
    log(f"  settings  shifts {config['shifts']}, overlap {config['overlap']:g}, segment {results['segment']:g} s")
    log("            (the model's own), split=True; both paths normalise the mix as demucs.separate does")
    for key, value in results["machine"].items():
        log(f"  {key:9} {value}")
    loads = "; ".join(", ".join(f"{v:.2f}" for v in load) for load in results["load_avg"])
    log(f"  load avg  {loads} (1/5/15 min, before; after): other work on the machine slows every row")
    log(f"\n{args.seconds:g} s input: median of {args.repeat} in-process runs; memory: a fresh process each")
    header = (
        f"{'path':12} {'wall s':>7} {'min-max':>13} {'x real time':>11} {'CPU s':>7} {'calls/segs':>10} "
        f"{'peak RSS':>10} {'RSS before':>10}" + (f" {'CUDA peak':>10}" if cuda else "")
    )
    log(header + "\n" + "-" * len(header))
    for path in (ENGINE, DIRECT):
        walls, memory = results["speed"]["walls"][path], results["memory"][path]
        calls, rows = results["speed"]["model_calls"][path]
        log(
            f"{path:12} {summary['median_wall_s'][path]:>7.2f} {f'{min(walls):.2f}-{max(walls):.2f}':>13} "
            f"{summary['x_realtime'][path]:>11.2f} {summary['median_cpu_s'][path]:>7.1f} {f'{calls}/{rows}':>10} "
            f"{mib(memory['peak_rss']):>10} {mib(memory['rss_input']):>10}"
            + (f" {mib(memory['cuda_peak']):>10}" if cuda else "")
        )
    comparison = results["speed"]["comparison"]
    log(
        "CPU s: CPU time of the process (all threads) during the run; calls/segs: model calls and segments run;\n"
        "peak RSS: VmHWM of a fresh process that loaded the model, decoded the input and ran one separation;\n"
        f"RSS before: its RSS before separating. max |engine - apply_model| over the stems = "
        f"{comparison['max_abs_diff']:.2e} ({comparison['relative']:.1e} of the largest sample)"
    )
    report_long(results)
    report_concurrent(results)
    report_targets(summary["targets"])


def report_long(results: dict[str, Any]) -> None:
    if "long" not in results:
        log("\nlong input: skipped (--skip-long)")
        return
    long = results["long"]
    seconds = long["frames"] / RATE
    log(f"\n{seconds:g} s input, a fresh process each: peak RSS (VmHWM), RSS before separating, wall, x real time")
    rows = [(JOB, long)] + ([(DIRECT, results["long_direct"])] if "long_direct" in results else [])
    for name, row in rows:
        cuda = f", CUDA peak {mib(row['cuda_peak'])}" if row.get("cuda_peak") is not None else ""
        log(
            f"  {name:20} peak {row['peak_rss'] / GIB:.2f} GiB ({row['peak_rss']} bytes), before "
            f"{mib(row['rss_input'])}, {row['wall_s']:.1f} s, {seconds / row['wall_s']:.2f}x{cuda}"
        )
    log(f"  ({JOB}: the WAV bytes decoded, engine.separate streaming into StemWriter: 4 16-bit WAV stems,")
    log(f"   {long['stem_bytes'] / MIB:.0f} MiB, written to a temporary folder, as job.run_separate wires them)")


def report_concurrent(results: dict[str, Any]) -> None:
    if "concurrent" not in results:
        return
    row = results["concurrent"]
    alone = results["summary"]["x_realtime"][ENGINE]
    log(
        f"\n{row['jobs']} concurrent jobs through one engine ({row['jobs']} threads, at most {row['max_rows']} "
        f"segment(s) per model call): {row['audio_s']:g} audio-s in {row['wall_s']:.2f} s = "
        f"{row['aggregate_x_realtime']:.2f}x real time in aggregate; one job alone {alone:.2f}x "
        f"({row['aggregate_x_realtime'] / alone:.2f}x that); {row['model_calls']} model calls, "
        f"{row['shared_calls']} shared by several jobs"
    )


def report_targets(targets: dict[str, Any]) -> None:
    verdict = {True: "PASS", False: "FAIL"}
    log("\nTargets")
    ratio = targets["engine_over_direct_wall"]
    log(
        f"  engine / apply_model wall time: {ratio['value']:.3f}  (target <= {TARGET_RATIO:g}: {verdict[ratio['met']]})"
    )
    if "long_peak_rss_bytes" in targets:
        long = targets["long_peak_rss_bytes"]
        log(
            f"  long input peak RSS: {long['value'] / GIB:.2f} GiB  (target <= 3 GiB = {TARGET_LONG_RSS} bytes, "
            f"1 GiB = 1024^3 bytes: {verdict[long['met']]})"
        )
    if "gpu_x_realtime" in targets:
        gpu = targets["gpu_x_realtime"]
        log(
            f"  engine on GPU, one job: {gpu['value']:.1f}x real time  "
            f"(target >= {GPU_TARGET_REALTIME:g}x: {verdict[gpu['met']]})"
        )
    else:
        log(f"  GPU (>= {GPU_TARGET_REALTIME:g}x real time, 4 concurrent jobs): not measured, no CUDA device")


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f} MiB"


# --- main --------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    config = Config(args.model, str(args.cache_dir), args.device, args.shifts, args.overlap)
    started = time.perf_counter()
    engine = open_engine(config)
    loaded = engine.load()
    log(f"loaded {args.model} on {loaded.device} in {time.perf_counter() - started:.1f} s")
    results: dict[str, Any] = {"config": asdict(config), "device": loaded.device, "machine": machine(loaded)}
    results["segment"] = float(loaded.sub_models[0].segment)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-demucs-input-") as folder:
        main_input = write_input(Path(folder) / "main.wav", args.seconds)
        mix = read_input(main_input)
        warm = np.ascontiguousarray(mix[:, : round(min(args.warmup_seconds, args.seconds) * RATE)])
        results["speed"] = measure_speed(engine, mix, warm, config, args.repeat)
        jobs = args.concurrent if args.concurrent is not None else GPU_CONCURRENT_JOBS * (loaded.device == "cuda")
        if jobs:
            results["concurrent"] = measure_concurrent(engine, mix, warm, config, jobs)
        results["memory"] = {path: in_child(path, main_input, config) for path in (ENGINE, DIRECT)}
        if not args.skip_long:
            long_input = write_input(Path(folder) / "long.wav", args.long_seconds)
            results["long"] = in_child(JOB, long_input, config)
            if args.direct_long:
                results["long_direct"] = in_child(DIRECT, long_input, config)
    results["load_avg"] = [load_before, os.getloadavg()]
    results["summary"] = summarise(results, args.seconds)
    return results


def main(argv: list[str] | None = None) -> int:
    global _LOG  # noqa: PLW0603 - with --json to stdout, the human-readable report goes to stderr
    parser = argparse.ArgumentParser(prog="python -m bench.bench_demucs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random:htdemucs", help="model ref (default random:htdemucs)")
    parser.add_argument("--seconds", type=float, default=60.0, help="input for speed and memory (default 60)")
    parser.add_argument("--long-seconds", type=float, default=600.0, help="long input for peak RSS (default 600)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per path, median reported (default 3)")
    parser.add_argument("--warmup-seconds", type=float, default=8.0, help="warm-up input per path (default 8)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    parser.add_argument("--shifts", type=int, default=1, help="random shifts, demucs --shifts (default 1)")
    parser.add_argument("--overlap", type=float, default=0.25, help="segment overlap, demucs --overlap (default 0.25)")
    parser.add_argument("--skip-long", action="store_true", help="skip the long-input peak RSS")
    parser.add_argument("--direct-long", action="store_true", help="also apply_model's peak RSS on the long input")
    parser.add_argument(
        "--concurrent",
        type=int,
        help=f"concurrent jobs through one engine (default {GPU_CONCURRENT_JOBS} on CUDA, else 0)",
    )
    default_cache = Path(os.environ.get("MODEL_CACHE_DIR") or Path(os.environ.get("DATA_DIR", "data")) / "models")
    parser.add_argument("--cache-dir", type=Path, default=default_cache, help=f"model cache (default {default_cache})")
    parser.add_argument(
        "--json", nargs="?", const="-", metavar="FILE", help="write the figures as JSON to FILE (stdout when no FILE)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    args = parser.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))
    if args.seconds <= 0 or args.long_seconds <= 0 or args.repeat < 1 or args.shifts < 0 or not 0 <= args.overlap < 1:
        parser.error("--seconds and --long-seconds must be > 0, --repeat >= 1, --shifts >= 0, 0 <= --overlap < 1")
    if args.json == "-":
        _LOG = sys.stderr
    args.cache_dir = args.cache_dir.resolve()  # children run from the repository root
    try:
        results = benchmark(args)
    except (BenchmarkError, AppError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    report(results, args)
    if args.json:
        document = json.dumps(results, indent=2)
        if args.json == "-":
            print(document)
        else:
            Path(args.json).write_text(document + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

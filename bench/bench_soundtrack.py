"""Soundtrack pipeline speed: the whole pipeline against one long `/generate` of the same total length
(`make bench-soundtrack`).

What runs: the real services as processes, as in services mode: a throwaway Redis, a SQLite database and
a local store in a temporary folder, the API, one MusicGen worker (the default batched engine, threads
pool), one Demucs worker and one pipeline worker, with `random:small` (the exact musicgen-small
architecture, random weights; built into the model cache the first time) and `random:htdemucs` (the
htdemucs architecture) by default, on the device the workers pick.

Each configuration then times, from submission to `completed` (polled every 0.1 s):
- baseline: `POST /generate` of the soundtrack's total length (40 s: two MusicGen windows);
- pipeline: `POST /generate/soundtrack` of 6 scenes (7 + 6 + 7 + 6 + 7 + 7 = 40 s, 2 s crossfades),
  with the configuration's stages; afterwards every step's row (GET /jobs/{id} of each child) gives its
  queue wait and run time, summed per stage, and the stages' wall spans.

The ratio pipeline / baseline is the figure of merit: the pipeline's overhead beyond generating the same
audio in one job (the target is under 15 % on CPU). Configurations: `default` (every stage the server
defaults to: stem-aware crossfades on Demucs, the quality loop) and `plain` (no stem separation, no
quality loop: scenes, tempo matching, cuts and crossfades only). Random weights make noise, so the
quality loop's scores (and whether it regenerates) say nothing about music; its time is shown apart.

Exit status 0 whether or not the target is met (a benchmark reports), 1 when a job failed.

    python -m bench.bench_soundtrack [--model random:small] [--demucs random:htdemucs] [--configs default,plain]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from soundstage import migrations
from tests.support.servers import RedisServer
from tests.support.stack import Stack
from tests.support.waiting import wait_until

SCENES = [7, 6, 7, 6, 7, 7]
CROSSFADE = 2.0
TARGET_OVERHEAD = 0.15
CONFIGS: dict[str, dict[str, bool]] = {
    "default": {},
    "plain": {"use_stem_aware_crossfade": False, "use_quality_loop": False},
}
ROOT = Path(__file__).resolve().parents[1]
FINAL = {"completed", "failed", "cancelled"}


class BenchmarkError(Exception):
    pass


@dataclass
class Timed:
    label: str
    wall_s: float
    job: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)


def _stamp(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def run_job(client: httpx.Client, path: str, body: dict[str, Any], timeout: float) -> Timed:
    started = time.monotonic()
    response = client.post(path, json=body)
    if response.status_code != 200:
        raise BenchmarkError(f"{path}: {response.status_code} {response.text}")
    job_id = response.json()["job_id"]

    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        return job if job["status"] in FINAL else None

    job = wait_until(finished, timeout, interval=0.1, message=f"{path} job {job_id}")
    wall = time.monotonic() - started
    if job["status"] != "completed":
        raise BenchmarkError(f"{path} job {job_id} {job['status']}: {job.get('error')}")
    steps = [client.get(f"/jobs/{child['job_id']}").json() for child in job.get("children", [])]
    return Timed(label=path, wall_s=wall, job=job, steps=steps)


def stage_split(timed: Timed) -> list[tuple[str, int, float, float, float]]:
    """Per stage: steps, summed queue wait, summed run time, and the wall span from the first step's
    creation to the last one's end."""
    by_stage: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for step in timed.steps:
        by_stage[step.get("stage") or "?"].append(step)
    rows = []
    for stage, steps in by_stage.items():
        created = [_stamp(s["created_at"]) or 0.0 for s in steps]
        started = [_stamp(s["started_at"]) or c for s, c in zip(steps, created, strict=True)]
        ended = [_stamp(s["finished_at"]) or b for s, b in zip(steps, started, strict=True)]
        waits = sum(b - a for a, b in zip(created, started, strict=True))
        runs = sum(b - a for a, b in zip(started, ended, strict=True))
        rows.append((stage, len(steps), waits, runs, max(ended) - min(created)))
    order = ["generating", "separating", "crossfading", "regenerating", "scoring", "finalizing"]
    return sorted(rows, key=lambda row: order.index(row[0]) if row[0] in order else len(order))


def start_stack(args: argparse.Namespace, work: Path) -> tuple[Stack, RedisServer]:
    redis = RedisServer().start()
    database = f"sqlite:///{work / 'soundstage.db'}"
    migrations.upgrade(database)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("API_KEY", "SOUNDSTAGE"))}
    env.update(
        REDIS_URL=redis.url,
        DATABASE_URL=database,
        STORAGE_URL=str(work / "files"),
        DATA_DIR=str(work),
        MODEL_CACHE_DIR=str(args.cache_dir),
        MUSICGEN_MODEL=args.model,
        DEMUCS_MODEL=args.demucs,
        DEVICE=args.device,
        MAX_DURATION="300",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(env=env, log_dir=work)
    stack.start_api()
    stack.start_worker()
    stack.start_worker(module="soundstage_demucs.app")
    stack.start_worker(module="soundstage_pipeline.app")
    stack.wait_for_workers(3, timeout=args.load_timeout)
    return stack, redis


def benchmark(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-soundtrack-"))
    stack, redis = start_stack(args, work)
    total = float(sum(SCENES))
    results: dict[str, tuple[Timed, Timed]] = {}
    try:
        with httpx.Client(base_url=stack.url, timeout=60) as client:
            print(f"warming up ({args.model}, {args.demucs})", flush=True)
            run_job(client, "/generate", {"prompt": "warm up", "duration": 2, "seed": 1}, args.timeout)
            for name in args.configs.split(","):
                body = {
                    "base_prompt": "warm acoustic guitar with soft piano",
                    "scenes": [{"mood": f"upbeat flavour {i}", "duration": d} for i, d in enumerate(SCENES)],
                    "crossfade_duration": CROSSFADE,
                    "seed": 7,
                    **CONFIGS[name],
                }
                print(f"[{name}] baseline: one /generate of {total:g} s", flush=True)
                baseline = run_job(
                    client, "/generate", {"prompt": body["base_prompt"], "duration": total, "seed": 7}, args.timeout
                )
                print(f"[{name}] pipeline: a {len(SCENES)}-scene soundtrack of {total:g} s", flush=True)
                pipeline = run_job(client, "/generate/soundtrack", body, args.timeout)
                results[name] = (baseline, pipeline)
    except BenchmarkError as error:
        print(f"FAILED: {error}\n{stack.logs()}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        redis.close()
        shutil.rmtree(work, ignore_errors=True)
    report(args, results, total)
    return 0


def report(args: argparse.Namespace, results: dict[str, tuple[Timed, Timed]], total: float) -> None:
    print()
    print(f"# Soundstage soundtrack benchmark ({date.today().isoformat()})")
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    versions = {name: _version(name) for name in ("torch", "transformers", "demucs", "librosa")}
    print("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    print(f"models: {args.model} (MusicGen), {args.demucs} (Demucs), device {args.device}")
    print()
    print("| config | baseline /generate s | pipeline s | ratio | overhead | target |")
    print("|---|---:|---:|---:|---:|---|")
    for name, (baseline, pipeline) in results.items():
        ratio = pipeline.wall_s / baseline.wall_s
        verdict = "MET" if ratio - 1 <= TARGET_OVERHEAD else "MISSED"
        print(f"| {name} | {baseline.wall_s:.1f} | {pipeline.wall_s:.1f} | {ratio:.3f} | {100 * (ratio - 1):+.1f} % | "
              f"{verdict} (<= {100 * TARGET_OVERHEAD:.0f} %) |")  # fmt: skip
    for name, (_, pipeline) in results.items():
        print()
        print(f"[{name}] stages (steps' rows: queue wait and run time summed; wall from first created to last done)")
        print("| stage | steps | queue wait s | run s | wall s |")
        print("|---|---:|---:|---:|---:|")
        for stage, count, waits, runs, wall in stage_split(pipeline):
            print(f"| {stage} | {count} | {waits:.2f} | {runs:.2f} | {wall:.2f} |")
        attempts = [len(t["attempts"]) for t in pipeline.job["result"].get("transitions") or []]
        duration = pipeline.job["result"]["files"][0]["duration"]
        print(f"file: {duration:.3f} s (asked {total:g} s); attempts per transition: {attempts}")
        print(json.dumps({"config": name, "pipeline_s": round(pipeline.wall_s, 3)}))


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_soundtrack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random:small", help="MusicGen model (default random:small; random:tiny)")
    parser.add_argument("--demucs", default="random:htdemucs", help="Demucs model (default random:htdemucs)")
    parser.add_argument("--configs", default="default,plain", help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    default_cache = ROOT / "data" / "models"
    parser.add_argument("--cache-dir", type=Path, default=default_cache, help=f"model cache (default {default_cache})")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one job may take (default 3600)")
    parser.add_argument("--load-timeout", type=float, default=900.0, help="seconds the workers may take to load")
    args = parser.parse_args(argv)
    unknown = set(args.configs.split(",")) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())

"""Jam speed (`make bench-jam`): the first chunk, chunk timing at `pace: realtime`, and how many sessions one
worker keeps in real time, through the real stack, side by side with the model's own speed in-process.

What runs: a throwaway Redis, a SQLite database and a local store in a temporary folder, the API, and one
Magenta worker (`--model`, `random:tiny` by default; `random:mrt2_small` / `random:mrt2_base` are the
published architectures with random weights, for a GPU) with `--slots` jam slots. Every session is a
WebSocket client of `/ws/jam` in rt mode (`--chunk-seconds` chunks, 48 kHz).

- baseline, in-process: a `JamSession` on the same model in this process (the worker's own class, no
  API, no Redis, no socket): its first chunk, and its real-time factor (seconds of audio per second).
  Its real-time factor bounds how many sessions one worker can keep in real time: `floor(rtf)`.
- first chunk, warm: `start` sent to the first `chunk` received (each of `--repeat` sessions started one
  after the other on the warm worker; median); the worker's own set-up time is shown beside it.
- realtime pacing: one session at `pace: realtime` for `--chunks` chunks: the spacing of arrivals once the
  window is full (its jitter: the standard deviation of the gaps, against the chunk length), each
  chunk's lateness against its playback deadline as the client sees it (arrival after the first chunk's
  arrival plus k-1 chunk lengths) and as the worker reports it, and the underruns (late chunks).
- concurrency: 1, 2, ... sessions at `pace: realtime` at once, `--chunks` chunks each, until one has an
  underrun past the warm-up chunks (or `--slots` is reached): the largest count with none is the worker's
  real-time capacity.

Exit status 0 whether or not a goal is met (a benchmark reports), 1 when a session failed.

    python -m bench.bench_jam [--model random:tiny] [--slots 4] [--chunks 16] [--chunk-seconds 2] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from soundstage import migrations
from tests.support.servers import RedisServer
from tests.support.stack import Stack
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
WARM_CHUNKS = 3
"""Chunks a realtime session sends before its window is full (1 + MAGENTA_MAX_AHEAD_CHUNKS at its default)."""
LATE_TOLERANCE = 0.05
"""Client-side lateness under this (network and scheduling noise on a loaded machine) is not an underrun."""


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
        MAGENTA_MODEL=args.model,
        MAGENTA_SESSIONS_PER_WORKER=str(args.slots),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        XLA_PYTHON_CLIENT_PREALLOCATE="false",
    )
    stack = Stack(env=env, log_dir=work)
    stack.start_api()
    stack.start_worker(module="soundstage_magenta.app")
    stack.wait_for_workers(1, timeout=args.load_timeout)
    return stack, redis


def in_process(args: argparse.Namespace) -> dict[str, float]:
    """The baseline: the worker's JamSession on the model, loaded here through the worker's loading path
    (JAX told not to preallocate, as the worker is: both share the GPU)."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    from soundstage_magenta.engine import MagentaEngine
    from soundstage_magenta.jam_session import JamSession

    from soundstage.schemas.jam import JamParams

    engine = MagentaEngine(args.model, cache_dir=args.cache_dir)
    system = engine.load()
    tokens = system.style_tokens(system.embed_text("disco"))
    params = JamParams(bpm=4 * 60.0 / args.chunk_seconds, bars_per_chunk=1, seed=1)
    JamSession(system, params, tokens).next_chunk()  # warm-up: the compiled steps
    started = time.perf_counter()
    session = JamSession(system, params, tokens)
    session.next_chunk()
    first = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.chunks):
        session.next_chunk()
    rtf = args.chunks * args.chunk_seconds / (time.perf_counter() - started)
    return {"first_chunk_ms": first * 1000, "real_time_factor": rtf}


class Session:
    """One WebSocket jam: when each message arrived."""

    def __init__(self, url: str, chunk_seconds: float, pace: str, chunks: int) -> None:
        self.url, self.chunk_seconds, self.pace, self.chunks = url, chunk_seconds, pace, chunks
        self.sent_at = 0.0
        self.started: dict[str, Any] = {}
        self.arrivals: list[float] = []
        self.worker_lateness: list[float] = []
        self.error: str | None = None

    def run(self) -> Session:
        from websockets.sync.client import connect

        try:
            with connect(self.url, max_size=None, open_timeout=30) as socket:
                self.sent_at = time.perf_counter()
                params = {"styles": "disco, funk", "pace": self.pace, "chunk_seconds": self.chunk_seconds}
                socket.send(json.dumps({"type": "start", "mode": "rt", "params": params}))
                while len(self.arrivals) < self.chunks:
                    message = json.loads(socket.recv(timeout=600))
                    if message["type"] == "started":
                        self.started = message
                    elif message["type"] == "chunk":
                        self.arrivals.append(time.perf_counter())
                        self.worker_lateness.append(float(message["lateness_seconds"]))
                    elif message["type"] == "error":
                        self.error = f"{message['code']}: {message['message']}"
                        return self
                socket.send(json.dumps({"type": "stop"}))
        except Exception as error:  # a benchmark reports what broke
            self.error = repr(error)
        return self

    @property
    def first_chunk_ms(self) -> float:
        return (self.arrivals[0] - self.sent_at) * 1000

    def client_lateness(self) -> list[float]:
        """Each chunk's arrival after its playback deadline (chunk 1's arrival plus k-1 chunk lengths)."""
        start = self.arrivals[0]
        return [max(0.0, at - (start + k * self.chunk_seconds)) for k, at in enumerate(self.arrivals)]

    def underruns(self) -> int:
        return sum(1 for late in self.client_lateness()[WARM_CHUNKS:] if late > LATE_TOLERANCE)


def wait_free(stack: Stack) -> None:
    """Until every slot is free again (a stopped session ends after the chunk it is making)."""

    def free() -> bool:
        workers = httpx.get(stack.url + "/health", timeout=5).json()["workers"]
        return all(w["jam"]["used"] == 0 for w in workers if w.get("jam"))

    wait_until(free, 120, interval=0.1, message="the jam slots to be free")


def first_chunks(url: str, stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    runs = []
    for _ in range(args.repeat + 1):
        runs.append(Session(url, args.chunk_seconds, "asap", 1).run())
        wait_free(stack)
    runs = runs[1:]  # the first warms the API's and the worker's paths up
    failed = [run.error for run in runs if run.error]
    if failed:
        raise RuntimeError(failed[0])
    return {
        "first_chunk_ms": statistics.median(run.first_chunk_ms for run in runs),
        "worker_setup_ms": statistics.median(run.started["started_in_seconds"] * 1000 for run in runs),
    }


def realtime(url: str, args: argparse.Namespace) -> dict[str, float]:
    run = Session(url, args.chunk_seconds, "realtime", args.chunks).run()
    if run.error:
        raise RuntimeError(run.error)
    # The second half: by then the window is full and the clock, not the model, sets the pace.
    paced = run.arrivals[len(run.arrivals) // 2 :]
    gaps = [b - a for a, b in itertools.pairwise(paced)]
    late = run.client_lateness()
    return {
        "gap_mean_s": statistics.mean(gaps) if gaps else math.nan,
        "jitter_ms": statistics.pstdev(gaps) * 1000 if len(gaps) > 1 else math.nan,
        "client_lateness_max_ms": max(late) * 1000,
        "worker_lateness_max_ms": max(run.worker_lateness) * 1000,
        "underruns": run.underruns(),
        "chunks": len(run.arrivals),
    }


def concurrency(url: str, stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for count in range(1, args.slots + 1):
        wait_free(stack)
        sessions = [Session(url, args.chunk_seconds, "realtime", args.chunks) for _ in range(count)]
        threads = [threading.Thread(target=session.run) for session in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failed = [session.error for session in sessions if session.error]
        if failed:
            raise RuntimeError(failed[0])
        underruns = sum(session.underruns() for session in sessions)
        worst = max(max(session.client_lateness()[WARM_CHUNKS:], default=0.0) for session in sessions)
        rows.append({"sessions": count, "underruns": underruns, "worst_lateness_ms": worst * 1000})
        if underruns:
            break
    return rows


def report(figures: dict[str, Any]) -> None:
    base, first, paced = figures["in_process"], figures["first_chunk"], figures["realtime"]
    chunk = figures["chunk_seconds"]
    lines = [
        f"\nJam benchmark: {figures['model']} on {figures['device']}, {chunk:g} s chunks",
        f"  in-process JamSession: first chunk {base['first_chunk_ms']:.0f} ms, "
        f"{base['real_time_factor']:.2f}x real time",
        f"  served, warm: first chunk {first['first_chunk_ms']:.0f} ms after `start` (worker set-up "
        f"{first['worker_setup_ms']:.0f} ms); {first['first_chunk_ms'] / base['first_chunk_ms']:.2f}x in-process",
        f"  pace realtime, {paced['chunks']} chunks: gaps {paced['gap_mean_s']:.3f} s (chunk {chunk:g} s), "
        f"jitter {paced['jitter_ms']:.0f} ms, lateness max {paced['client_lateness_max_ms']:.0f} ms client / "
        f"{paced['worker_lateness_max_ms']:.0f} ms worker, {paced['underruns']} underrun(s)",
    ]
    for row in figures["concurrency"]:
        lines.append(
            f"  {row['sessions']} session(s) at once: {row['underruns']} underrun(s), "
            f"worst {row['worst_lateness_ms']:.0f} ms late"
        )
    kept = max((row["sessions"] for row in figures["concurrency"] if row["underruns"] == 0), default=0)
    bound = base["real_time_factor"]
    lines.append(f"  real-time sessions per worker: {kept} (one session alone in-process: {bound:.2f}x real time)")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_jam", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random:tiny", help="Magenta model (default random:tiny)")
    parser.add_argument("--slots", type=int, default=4, help="MAGENTA_SESSIONS_PER_WORKER and the most sessions tried")
    parser.add_argument("--chunks", type=int, default=16, help="chunks per realtime session (default 16)")
    parser.add_argument("--chunk-seconds", type=float, default=2.0, help="rt-mode chunk length (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="first-chunk runs (default 3)")
    default_cache = ROOT / "data" / "models"
    parser.add_argument("--cache-dir", type=Path, default=default_cache, help=f"model cache (default {default_cache})")
    parser.add_argument("--load-timeout", type=float, default=900.0, help="seconds the worker may take to load")
    parser.add_argument("--json", nargs="?", const="-", help="also write the figures as JSON (to FILE, or stdout)")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"model": args.model, "chunk_seconds": args.chunk_seconds, "slots": args.slots}
    with tempfile.TemporaryDirectory(prefix="soundstage-bench-jam-") as folder:
        stack, redis = start_stack(args, Path(folder))
        try:
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before JAX starts in this process
            import jax

            figures["device"] = (
                f"{jax.default_backend()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
            )
            figures["in_process"] = in_process(args)
            url = stack.url.replace("http://", "ws://") + "/ws/jam"
            figures["first_chunk"] = first_chunks(url, stack, args)
            figures["realtime"] = realtime(url, args)
            figures["concurrency"] = concurrency(url, stack, args)
        except RuntimeError as error:
            print(f"a session failed: {error}\n{stack.logs()}", file=sys.stderr)
            return 1
        finally:
            stack.stop()
            redis.stop()
    figures["versions"] = {name: _version(name) for name in ("magenta-rt", "jax", "jaxlib")}
    report(figures)
    if args.json:
        text = json.dumps(figures, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    sys.exit(main())

"""`make fuzz`: Schemathesis over the whole OpenAPI document, with and without an API key, against the
API process in services mode (real Redis, PostgreSQL, a MusicGen and a Demucs worker on random:tiny
models). Passes when no answer is a server error and every answer matches the document (status code,
content type, headers, body schema).

Left out on purpose, with why:
- `positive_data_acceptance`: a URL input (`audio_url`, `melody_audio_url`) is judged against the network
  and the SSRF policy, and a multipart route takes its fields or a `params` part, not both; neither is a
  JSON-schema fact, so schema-valid requests are rightly refused with a 422 and a code.
- `negative_data_rejection`: an empty `Prefer` header is served as no preference (RFC 7240 lets a server
  ignore what it does not understand), though the document's array type has no empty form.
- `use_after_free`: `DELETE /jobs/{id}` cancels (musicgen-api's meaning); the job stays readable, `cancelled`.

Rate limits are off for the run (bench.services: one address and one key stand for every request).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.services import services_env
from soundstage import migrations
from tests.support.servers import PostgresServer, RedisServer
from tests.support.stack import Stack

KEY = "fuzz-key"
EXCLUDED_CHECKS = "positive_data_acceptance,negative_data_rejection,use_after_free"
DEMUCS = "soundstage_demucs.app"


def schemathesis(url: str, *, key: str | None, examples: int, seed: int, report: Path) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    if key:
        command += ["-H", f"X-API-Key: {key}"]
    print("$", " ".join(command).replace(KEY, "[key]"), flush=True)
    return subprocess.call(command)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=50, help="Examples per operation and phase.")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument(
        "--report-dir", type=Path, help="Where the JUnit reports go (default: the run's temporary folder)."
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="soundstage-fuzz-"))
    reports = args.report_dir or workdir
    reports.mkdir(parents=True, exist_ok=True)
    with RedisServer() as redis_server, PostgresServer() as postgres:
        migrations.upgrade(postgres.url)
        env = services_env(
            workdir,
            redis_url=redis_server.url,
            database_url=postgres.url,
            API_KEYS=KEY,
            SYNC_WAIT_SECONDS="2",  # the waiting routes answer 202 soon instead of holding the fuzzer
            LOG_LEVEL="WARNING",
        )
        stack = Stack(env=env, log_dir=workdir)
        try:
            stack.start_api()
            stack.start_worker()
            stack.start_worker(module=DEMUCS)
            stack.wait_for_workers(2, timeout=300)
            started = time.monotonic()
            outcomes = {
                label: schemathesis(
                    stack.url,
                    key=key,
                    examples=args.max_examples,
                    seed=args.seed,
                    report=reports / f"fuzz-{label}.xml",
                )
                for label, key in (("with-key", KEY), ("without-key", None))
            }
            print(f"\nfuzz: {outcomes} (0: no server error, no mismatch) in {time.monotonic() - started:.0f} s")
            server_errors = stack.api.log_text().count("Traceback") if stack.api else 0
            print(f"tracebacks in the API log: {server_errors}")
            return 0 if not any(outcomes.values()) and not server_errors else 1
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())

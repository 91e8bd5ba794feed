"""Run the chaos scenarios (all, or those named) and print their figures; exit 1 if one broke its promise."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.chaos import __doc__ as about
from bench.chaos import embedded_stop, postgres_outage, redis_restart, sigkill
from bench.chaos.common import Outcome

SCENARIOS: dict[str, Callable[[Path], Outcome]] = {
    "sigkill": sigkill.run,
    "ctrl-c": embedded_stop.run,
    "redis": redis_restart.run,
    "postgres": postgres_outage.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=about, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], help="Default: all of them.")
    args = parser.parse_args()
    outcomes = []
    for name in args.scenarios or list(SCENARIOS):
        workdir = Path(tempfile.mkdtemp(prefix=f"soundstage-chaos-{name}-"))
        print(f"# {name} (logs in {workdir})", flush=True)
        started = time.monotonic()
        outcome = SCENARIOS[name](workdir)
        outcome.figures["scenario took"] = f"{time.monotonic() - started:.0f} s"
        print(outcome.render(), flush=True)
        outcomes.append(outcome)
    print("\n" + "\n\n".join(outcome.render() for outcome in outcomes))
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

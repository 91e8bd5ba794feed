#!/usr/bin/env bash
# `make run`: the pipeline pool's tempo matching runs Rubber Band's `rubberband` program (through
# pyrubberband). Install it from Debian (rubberband-cli) when it is missing and this runs as root
# with apt; otherwise print how to install it and carry on: the pool starts without it, and
# soundtracks are then mixed without tempo matching.
set -euo pipefail
command -v rubberband >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing rubberband-cli from Debian (tempo matching in the pipeline pool)"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq rubberband-cli >/dev/null; then
    exit 0
  fi
fi
echo "rubberband not found: soundtracks skip tempo matching (install it: sudo apt-get install rubberband-cli, or brew install rubberband)" >&2

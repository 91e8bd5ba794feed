#!/usr/bin/env bash
# The test suite starts throwaway Redis and PostgreSQL servers itself; it needs their
# binaries, and the pipeline pool's tests run Rubber Band's `rubberband` program (tempo
# matching, through pyrubberband). Install them from Debian when missing (as root), else say
# what to install.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v rubberband >/dev/null 2>&1 || missing+=(rubberband-cli)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} from Debian for the test servers"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # The Debian package starts system-wide servers; the tests start their own.
  service redis-server stop >/dev/null 2>&1 || true
  service postgresql stop >/dev/null 2>&1 || true
else
  echo "The tests need: ${missing[*]} (e.g. sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi

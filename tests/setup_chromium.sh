#!/bin/sh
# Installs Debian's chromium for the live preview test (tests/test_live_preview.py), only if missing.
# Needs root and network; without them the test skips and says why.
set -e
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium

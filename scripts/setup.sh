#!/usr/bin/env bash
# The README's install command: Debian's Chromium for the end-to-end tests (when missing and apt is at hand), then npm ci.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${CHROMIUM_PATH:-} ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (the end-to-end tests drive it)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the end-to-end tests need Chromium: install it, or set CHROMIUM_PATH to a Chrome/Chromium binary" >&2
  fi
fi

npm ci

#!/usr/bin/env bash
# Installs Debian's chromium (for the browser test, tests/e2e/test_inbox_browser.py) when it is
# missing and apt-get can install it. It never downloads a browser from anywhere else.
set -u
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "WARNING: $CHROMIUM is missing and there is no apt-get to install it" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "WARNING: $CHROMIUM is missing; install it as root: apt-get install -y chromium chromium-driver" >&2
    exit 0
  fi
fi
echo "chromium is missing: installing Debian's package"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium chromium-driver; }
[ -x "$CHROMIUM" ] || echo "WARNING: could not install chromium" >&2
exit 0

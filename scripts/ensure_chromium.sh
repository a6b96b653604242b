#!/usr/bin/env bash
# Installs Debian's chromium (for the browser test, tests/e2e/test_inbox_browser.py) when it is
# missing and apt-get can install it. It never downloads a browser from anywhere else.
set -u
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
"$(dirname "$0")/apt_install.sh" chromium chromium chromium-driver
[ -x "$CHROMIUM" ] || echo "WARNING: could not install chromium" >&2
exit 0

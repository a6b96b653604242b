#!/usr/bin/env bash
# apt_install.sh WHAT PACKAGE...: installs Debian's PACKAGEs (what `make test` needs of the
# machine: WHAT names them in messages) when apt-get can, as root or through a password-less
# sudo; otherwise says how and carries on. It never downloads anything from elsewhere. Always
# exits 0: a test that needs the program skips with its own message when it is missing.
set -u
what=$1
shift
if ! command -v apt-get >/dev/null 2>&1; then
  echo "WARNING: $what is missing and there is no apt-get to install it" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "WARNING: $what is missing; install it as root: apt-get install -y $*" >&2
    exit 0
  fi
fi
echo "$what is missing: installing Debian's package"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends "$@" \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "$@"; }
exit 0

#!/usr/bin/env bash
# Installs Debian's pgbouncer (for the several-hosts test, tests/e2e/test_multihost.py, and
# scripts/multihost.py) when it is missing and apt-get can install it. Only the binary is
# used: the package's own service is left stopped and disabled (the script starts its own
# PgBouncer with a configuration of its own). It never downloads anything from elsewhere.
set -u
command -v pgbouncer >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/pgbouncer ] && exit 0
"$(dirname "$0")/apt_install.sh" pgbouncer pgbouncer
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
if [ -x /usr/sbin/pgbouncer ]; then
  # The package starts a service on 127.0.0.1:6432 where systemd or init scripts run: stop it,
  # nothing here uses it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/pgbouncer ]; then
    $SUDO /etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
  fi
else
  echo "WARNING: could not install pgbouncer" >&2
fi
exit 0

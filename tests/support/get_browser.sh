#!/usr/bin/env bash
# Get Debian's chromium for the browser tests where this user can: as root (or with password-less
# sudo) through apt-get. Never fails: where chromium cannot be had, the browser tests skip with the
# reason (tests/conftest.py), and under CI=true they fail instead.
/usr/bin/chromium --version >/dev/null 2>&1 && exit 0  # present and able to run
command -v apt-get >/dev/null 2>&1 || exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""
elif sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
  echo "Debian's chromium is missing and this user cannot install it (not root, no password-less sudo):" \
       "the browser tests will be skipped; 'sudo apt-get install chromium' runs them" >&2
  exit 0
fi
echo "installing Debian's chromium for the browser tests (apt-get install chromium) ..." >&2
$SUDO apt-get update -qq >/dev/null 2>&1 \
  && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
  || echo "could not install chromium with apt-get; the browser tests will be skipped" >&2
/usr/bin/chromium --version >/dev/null 2>&1 \
  || echo "chromium is installed but /usr/bin/chromium cannot run; the browser tests will be skipped" >&2
exit 0

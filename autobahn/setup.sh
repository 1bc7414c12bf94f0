#!/usr/bin/env bash
# Create, or reuse, the Python 2.7 virtualenv in which autobahn/run.py runs
# wstest (Autobahn TestSuite 25.10.1, the RFC 6455 conformance suite).
#
# usage: bash autobahn/setup.sh
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/flask-sockets-channels-autobahn/
#   py27/       the virtualenv: requirements-py27.txt, pinned
#   bootstrap/  a Python 3 venv holding virtualenv<20.22, the last release
#               line of virtualenv that can create Python 2.7 environments
# py27/ is reused while its .requirements-sha256 matches
# requirements-py27.txt, and rebuilt from scratch otherwise. Concurrent
# callers are serialised with flock.
#
# Why Python 2.7: autobahntestsuite, even its 2025-10 release, is Python 2
# source; on Python 3 wstest dies at import.
# Which Python 2.7: $PY27 if set, else the newest 2.7 under pyenv, else
# python2.7 on PATH. Which Python 3 (for bootstrap/ only): $PYTHON3 or
# python3.
#
# Last line on success: "setup: ready: <path of the venv's python>".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/flask-sockets-channels-autobahn"
venv="$cache/py27"
requirements="$here/requirements-py27.txt"
mkdir -p "$cache"

if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.lock"
  flock 9
fi

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
ready() {
  [ -x "$venv/bin/python" ] \
    && [ "$(cat "$venv/.requirements-sha256" 2>/dev/null)" = "$want" ] \
    && "$venv/bin/python" -c "import autobahntestsuite.fuzzing" >/dev/null 2>&1
}
if ready; then
  echo "setup: ready: $venv/bin/python"
  exit 0
fi

py27="${PY27:-}"
if [ -z "$py27" ]; then
  pyenv_root="${PYENV_ROOT:-}"
  if [ -z "$pyenv_root" ] && command -v pyenv >/dev/null 2>&1; then
    pyenv_root="$(pyenv root)"
  fi
  for candidate in "${pyenv_root:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7; do
    [ -x "$candidate" ] && py27="$candidate"
  done
fi
if [ -z "$py27" ] && command -v python2.7 >/dev/null 2>&1; then
  py27="$(command -v python2.7)"
fi
if [ -z "$py27" ]; then
  echo "setup: no Python 2.7 interpreter found; install one (e.g. pyenv install 2.7.18) or set PY27" >&2
  exit 2
fi
echo "setup: building $venv with $("$py27" --version 2>&1) at $py27"

# pip_install PYTHON ARGS...: pip install, quiet, keeping its exit status.
pip_install() {
  local python="$1" status=0
  shift
  "$python" -m pip install -q --disable-pip-version-check "$@" > "$cache/pip.log" 2>&1 \
    || status=$?
  grep -v -e "is ignored: it is neither" -e "DEPRECATION: Python 2.7" "$cache/pip.log" || true
  if [ "$status" != 0 ]; then
    echo "setup: pip install $* failed (exit $status)" >&2
    exit 1
  fi
}

bootstrap="$cache/bootstrap"
if ! "$bootstrap/bin/python" -c "import virtualenv" >/dev/null 2>&1; then
  rm -rf "$bootstrap"
  "${PYTHON3:-python3}" -m venv "$bootstrap"
  pip_install "$bootstrap/bin/python" "virtualenv<20.22"
fi

rm -rf "$venv"
"$bootstrap/bin/python" -m virtualenv -q -p "$py27" "$venv"
pip_install "$venv/bin/python" --no-python-version-warning -r "$requirements"
"$venv/bin/python" -c "import autobahntestsuite.fuzzing" || {
  echo "setup: autobahntestsuite does not import in $venv" >&2
  exit 1
}
echo "$want" > "$venv/.requirements-sha256"
echo "setup: ready: $venv/bin/python"

#!/bin/sh
# Checks what `make` needs before creating the virtual environment: a Python >= 3.11 with venv
# and the C headers (the Cython kernels are compiled at install). On Debian/Raspberry Pi OS
# these come from python3-venv and python3-dev; as root we install them, otherwise we say how.
PY="${1:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "bootstrap: $PY not found; install Python 3.11 (Debian: apt-get install python3)" >&2; exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: $PY is $("$PY" -V 2>&1); firmware-py needs Python >= 3.11 (make PYTHON=python3.11)" >&2; exit 1
fi
missing=""
"$PY" -c 'import ensurepip, venv' 2>/dev/null || missing="$missing python3-venv"
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || missing="$missing python3-dev"
command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || missing="$missing gcc"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing$missing with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2 && exit 0
fi
echo "bootstrap: missing$missing; install them (Debian: sudo apt-get install$missing) and run make again" >&2
exit 1

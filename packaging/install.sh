#!/bin/sh
# Install firmware-py as a systemd service on Raspberry Pi OS (64-bit) or Debian. Run as root
# from a clone: sh packaging/install.sh. Idempotent: rerun it to upgrade the code.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/firmware-py

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo sh packaging/install.sh)" >&2
    exit 2
fi
apt-get install -y --no-install-recommends python3-venv python3-dev gcc make

# The code and its virtual environment (the Cython kernels are compiled here, for this CPU).
mkdir -p "$prefix"
cp -a "$here/." "$prefix/src"
python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install --quiet --upgrade pip
"$prefix/venv/bin/pip" install --quiet "$prefix/src"
cp "$here/README.md" "$prefix/README.md"

# The daemon's user and groups, its udev rules, its unit.
install -m 0644 "$here/packaging/firmware-py.sysusers" /usr/lib/sysusers.d/firmware-py.conf
systemd-sysusers /usr/lib/sysusers.d/firmware-py.conf
install -m 0644 "$here/packaging/60-firmware-py.rules" /etc/udev/rules.d/60-firmware-py.rules
udevadm control --reload-rules && udevadm trigger
install -m 0644 "$here/packaging/firmware-py.service" /etc/systemd/system/firmware-py.service

# The configuration is the operator's: written once, never overwritten by an upgrade.
mkdir -p /etc/firmware-py
if [ ! -e /etc/firmware-py/config.yaml ]; then
    install -m 0640 -g firmware-py "$here/packaging/config.yaml" /etc/firmware-py/config.yaml
fi
"$prefix/venv/bin/firmware-py" config check /etc/firmware-py/config.yaml || {
    echo "install.sh: fix /etc/firmware-py/config.yaml (see above), then: systemctl enable --now firmware-py" >&2
    exit 2
}
systemctl daemon-reload
echo "installed; start it with: systemctl enable --now firmware-py"

#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian/Ubuntu machine:
# OpenSSH (server and client), HAProxy and Python 3. Run as root; idempotent.
# A second run installs nothing and takes well under a second.
#
# The packages' own services are never started: the tests start their own
# sshd and haproxy processes on loopback addresses, with their own configs.
set -euo pipefail

missing=()
test -x /usr/sbin/sshd || missing+=(openssh-server)
{ command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; } || missing+=(openssh-client)
test -x /usr/sbin/haproxy || missing+=(haproxy)
command -v python3 >/dev/null || missing+=(python3)

if ((${#missing[@]} > 0)); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: must run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exit 101 tells invoke-rc.d not to start (or restart) any
    # service while the packages install. Leave an existing policy alone.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    cleanup() { if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi; }
    trap cleanup EXIT
    # Wait for another apt/dpkg (a concurrent setup, unattended-upgrades)
    # instead of failing at once; bounded at 10 minutes.
    apt_opts=(-o DPkg::Lock::Timeout=600)
    apt-get "${apt_opts[@]}" update
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
fi

# Belt and braces: if an init system started the services anyway (a machine
# with systemd where policy-rc.d was already permissive), stop them. Errors
# are ignored because most containers have no init system at all.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl stop ssh.service haproxy.service >/dev/null 2>&1 || true
fi

# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd

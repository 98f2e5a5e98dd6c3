#!/usr/bin/env bash
# Installs what the integration tests need on a fresh Debian/Ubuntu machine:
# OpenSSH (server and client), HAProxy, Python 3, moto_server (the AWS
# stand-in of tests/aws.rs, from PyPI), Chromium (renders the HTML report
# headless in tests/cli/report.rs) and tmux (the terminal the live view is
# checked in, tests/cli/live.rs). Run as root; idempotent.
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
command -v chromium >/dev/null || missing+=(chromium)
command -v tmux >/dev/null || missing+=(tmux)
# pip is needed only while moto is missing (checked once: importing it takes
# half a second).
has_moto() { command -v python3 >/dev/null && python3 -c 'import moto.server' >/dev/null 2>&1; }
moto_missing=false
if ! has_moto; then
    moto_missing=true
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi

if ((${#missing[@]} > 0)); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: must run as root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d exit 101 tells invoke-rc.d (and deb-systemd-invoke) not to
    # start any service while the packages install. A policy the machine
    # already has is set aside meanwhile and put back afterwards.
    policy=/usr/sbin/policy-rc.d
    saved="$policy.fleetroll-setup-saved"
    # (A saved policy left by an interrupted run is the original: keep it.)
    if [ -e "$policy" ] && [ ! -e "$saved" ]; then mv -f "$policy" "$saved"; fi
    restore_policy() {
        rm -f "$policy"
        if [ -e "$saved" ]; then mv -f "$saved" "$policy"; fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    # Wait for another apt/dpkg (a concurrent setup, unattended-upgrades)
    # instead of failing at once; bounded at 10 minutes.
    apt_opts=(-o DPkg::Lock::Timeout=600)
    apt-get "${apt_opts[@]}" update
    apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

    # Belt and braces: should systemd have started the services of what was
    # just installed anyway, stop them. Services that were there before are
    # left alone: this may be someone's workstation, reached over its sshd.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        for pkg in "${missing[@]}"; do
            case "$pkg" in
                openssh-server) systemctl stop ssh.service >/dev/null 2>&1 || true ;;
                haproxy) systemctl stop haproxy.service >/dev/null 2>&1 || true ;;
            esac
        done
    fi
fi

# moto 5.x: PITFALLS describes its behaviour for that major version. A
# Python whose packages the distribution manages (PEP 668) needs the
# override; a virtualenv or pyenv Python takes the plain install.
if $moto_missing; then
    echo "setup.sh: installing moto[server] from PyPI" >&2
    python3 -m pip install --quiet 'moto[server]>=5,<6' 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages 'moto[server]>=5,<6'
    python3 -c 'import moto.server'
fi

# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd

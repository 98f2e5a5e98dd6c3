#!/usr/bin/env bash
# Builds the Debian package: target/debian/fleetroll_<version>_<arch>.deb.
#   bash packaging/deb.sh            build it
#   bash packaging/deb.sh --install  build it, install it with dpkg -i and
#                                    check what it installed
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb
fi
cargo build --release --locked
mkdir -p target/assets
bin=target/release/fleetroll
"$bin" man > target/assets/fleetroll.1
"$bin" completions bash > target/assets/fleetroll.bash
"$bin" completions zsh > target/assets/_fleetroll
"$bin" completions fish > target/assets/fleetroll.fish
deb=$(cargo deb --no-build --locked | tail -n 1)
echo "$deb"

if [ "${1:-}" = "--install" ]; then
    dpkg -i "$deb"
    test "$(command -v fleetroll)" = /usr/bin/fleetroll
    /usr/bin/fleetroll --version
    test -s /usr/share/man/man1/fleetroll.1.gz
    test -s /usr/share/bash-completion/completions/fleetroll
    test -s /usr/share/doc/fleetroll/examples/cron/fleetroll-security-patch
    test -s /usr/share/doc/fleetroll/examples/systemd/fleetroll-security-patch.service
    test -s /usr/share/doc/fleetroll/docs/inventory.md
    echo "installed and checked: $deb"
fi

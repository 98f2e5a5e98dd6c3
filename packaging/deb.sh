#!/usr/bin/env bash
# Builds the Debian package: target/debian/fleetroll_<version>_<arch>.deb.
#   bash packaging/deb.sh                 build it from the release binary
#   bash packaging/deb.sh --install       build it, install it with dpkg -i
#                                         and check what it installed
#   bash packaging/deb.sh --profile dev   package the debug binary instead:
#                                         CI checks the packaging this way,
#                                         as a release build would take it
#                                         past its time limit
set -euo pipefail
cd "$(dirname "$0")/.."

install=false
profile=release
while (($# > 0)); do
    case "$1" in
        --install) install=true ;;
        --profile) profile="$2"; shift ;;
        *) echo "deb.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case "$profile" in
    release) bin=target/release/fleetroll ;;
    dev) bin=target/debug/fleetroll ;;
    *) echo "deb.sh: --profile is release or dev, not $profile" >&2; exit 2 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install --locked cargo-deb
fi
cargo build --locked --profile "$profile" --bin fleetroll
mkdir -p target/assets
"$bin" man > target/assets/fleetroll.1
"$bin" completions bash > target/assets/fleetroll.bash
"$bin" completions zsh > target/assets/_fleetroll
"$bin" completions fish > target/assets/fleetroll.fish
# cargo-deb strips the binary (a release build is stripped already) and
# warns that a dev profile is meant for checking, not for shipping.
deb=$(cargo deb --no-build --locked --profile "$profile" | tail -n 1)
echo "$deb"

if $install; then
    dpkg -i "$deb"
    test "$(command -v fleetroll)" = /usr/bin/fleetroll
    /usr/bin/fleetroll --version
    dpkg -L fleetroll
    test -s /usr/share/man/man1/fleetroll.1.gz
    test -s /usr/share/bash-completion/completions/fleetroll
    test -s /usr/share/zsh/vendor-completions/_fleetroll
    test -s /usr/share/fish/vendor_completions.d/fleetroll.fish
    test -s /usr/share/doc/fleetroll/examples/cron/fleetroll-security-patch
    test -s /usr/share/doc/fleetroll/examples/systemd/fleetroll-security-patch.service
    test -s /usr/share/doc/fleetroll/docs/inventory.md
    examples=/usr/share/doc/fleetroll/examples
    /usr/bin/fleetroll validate -i "$examples/inventories/small-haproxy.toml" \
        -p "$examples/playbooks/restart-service.toml"
    echo "installed and checked: $deb"
fi

#!/bin/sh
# Install the real programs the tests drive, where they are missing:
#   irssi, weechat-headless, ii (IRC clients), tmux (to drive irssi and
#   chat_client on a terminal), telnet, the openssl CLI (a TLS peer), and
#   chromium with chromedriver (the web door's browser test, driven by
#   selenium: Debian's browser, never a downloaded one), redis-server (the
#   chat's backplane: the tests start their own, on a loopback port, without
#   persistence); nc (netcat-openbsd) on request.
# Run as root on Debian/Ubuntu (CI does); elsewhere it says what is missing
# and exits 0, and the tests that need a missing program skip (or, under
# CI=true, fail). Usage: sh tests/install_components.sh [PROGRAM ...]
set -eu

# program -> Debian package
package_for() {
    case "$1" in
        irssi) echo irssi ;;
        weechat-headless) echo weechat-headless ;;
        ii) echo ii ;;
        tmux) echo tmux ;;
        telnet) echo telnet ;;
        openssl) echo openssl ;;
        redis-server) echo redis-server ;;
        chromium) echo chromium ;;
        chromedriver) echo chromium-driver ;;
        nc) echo netcat-openbsd ;;
        *) echo "install_components.sh: unknown program $1" >&2; exit 2 ;;
    esac
}

programs=${*:-"irssi weechat-headless ii tmux telnet openssl chromium chromedriver redis-server"}
missing=""
for program in $programs; do
    command -v "$program" >/dev/null 2>&1 || missing="$missing $(package_for "$program")"
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_components.sh: not installed:$missing (run as root on a Debian-like system to install them)" >&2
    exit 0
fi
echo "install_components.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# The dpkg lock may be held for a while by another apt; wait for it.
apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >/dev/null

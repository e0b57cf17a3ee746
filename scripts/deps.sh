#!/bin/sh
# Install every Debian package keyd's build and tests need; "deps.sh bench" also those only the benchmarks need
# (make bench). Idempotent: does nothing when all are there.
set -eu

PACKAGES="
build-essential pkg-config clang llvm libclang-rt-14-dev
libp11-kit-dev p11-kit libssl-dev openssl libsqlite3-dev sqlite3 libjansson-dev libmicrohttpd-dev
libinih-dev libsystemd-dev systemd libcurl4-openssl-dev curl
softhsm2 libsofthsm2 opensc libengine-pkcs11-openssl
libcriterion-dev
"
# Only for "make bench": bench-cost serves the same JWKS bytes with nginx (1 worker) as a baseline. "make check"
# (and CI) never needs them.
BENCH_PACKAGES="
nginx-light
"
[ "${1:-}" = bench ] && PACKAGES="$PACKAGES $BENCH_PACKAGES"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# node and npm (the interop test) may come from elsewhere than Debian: only install Debian's when there are none.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"

[ -z "$missing" ] && exit 0

echo "keyd: installing missing packages:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "keyd: run as root or install:$missing" >&2; exit 1; }
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

#!/bin/sh
# install-deps.sh - installs the Debian packages circmon needs to build, test and run.
#
# clang-14 and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes) build
# the fuzz targets (make fuzz); llvm-14 brings llvm-symbolizer for their stacks.
#
# Idempotent and fast when everything is present: only missing packages are
# installed, and apt-get update runs only when something is missing. Uses sudo
# when not root. Debian 12 (bookworm).
set -eu

PKGS="build-essential pkg-config
libevent-dev librdkafka-dev libprotobuf-c-dev protobuf-c-compiler
libhiredis-dev libsystemd-dev libinih-dev libjansson-dev
check libsubunit-dev
redis-server kcat valgrind bc time
clang-14 libclang-rt-14-dev llvm-14
prometheus prometheus-alertmanager
wrk
curl
chromium
man-db"

# One dpkg-query for all; packages it has never heard of print nothing.
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PKGS 2>/dev/null |
    awk '$2 == "installed" { print $1 }' || true)
missing=""
for p in $PKGS; do
    echo "$installed" | grep -qx "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: not root and no sudo; install these packages:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing

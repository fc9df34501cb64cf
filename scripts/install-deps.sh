#!/bin/sh
# Installs the Debian packages the build, the tests and the demo need, if
# any is missing.  Safe to run again: it does nothing when all are present.
set -eu

# clang and libclang-rt-14-dev: the libFuzzer targets of t/fuzz (make fuzz)
PACKAGES="nginx nginx-dev libhiredis-dev libevent-dev libcmocka-dev
redis-server redis-tools libtest-base-perl build-essential curl
clang libclang-rt-14-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

echo "installing:$missing"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "install-deps: not root and no sudo; install:$missing" >&2
        exit 1
    }
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null

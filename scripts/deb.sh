#!/bin/bash
# Builds the Debian package libnginx-mod-http-rate-limit with Debian's own
# tools (dpkg-buildpackage, debhelper and dh_nginx from nginx-dev) and puts
# the .deb into the build directory.
#
#   scripts/deb.sh [OUT_DIR]        default: build/
#
# The package is built from a copy of the sources in OUT_DIR/deb/, so the
# work tree stays clean (dpkg-buildpackage writes next to the source tree).
# Installs the packaging tools with apt-get when they are missing (root or
# sudo); needs no network otherwise.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$top/build}")
pkg=libnginx-mod-http-rate-limit

# what dpkg-buildpackage and debian/control's Build-Depends need
TOOLS="dpkg-dev debhelper build-essential nginx-dev libhiredis-dev"

missing=""
for p in $TOOLS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "deb: installing:$missing"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "deb: not root and no sudo; install:$missing" >&2
            exit 1
        }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cd "$top"
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
deb=${pkg}_${version}_${arch}.deb

work=$out/deb
stage=$work/$pkg-$version

rm -rf "$work"
mkdir -p "$stage"

# what the package is built from: the module and its packaging and docs
cp -a config src debian README.md "$stage/"
mkdir -p "$stage/docs"
cp -a docs/*.md "$stage/docs/"

echo "deb: dpkg-buildpackage in $stage (log: $work/build.log)"
(
    cd "$stage"
    DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -b --no-sign
) > "$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    echo "deb: dpkg-buildpackage failed, see $work/build.log" >&2
    exit 1
}

# one package in OUT_DIR, so that build/libnginx-mod-http-rate-limit_*.deb
# names it
rm -f "$out/${pkg}"_*.deb
cp "$work/$deb" "$out/$deb"
echo "built $out/$deb"

#!/bin/bash
# Builds ngx_http_rate_limit_module.so against an nginx source tree: by
# default Debian's nginx-dev build tree (/usr/share/nginx/src) with the
# configure flags of the packaged nginx, so the stock binary loads it.
#
#   scripts/build-module.sh [OUT_DIR]
#   NGINX_SRC=/path/to/nginx-1.22.1 scripts/build-module.sh
#
# With a full source tree the module is configured with --with-compat (a
# dynamic module loads only into an nginx built with the same configure
# "signature"; --with-compat makes that check pass between builds).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$top/build}")
src=${NGINX_SRC:-/usr/share/nginx/src}
work=$out/nginx-src

mkdir -p "$out"

# configure writes objs/ into the tree: build in a private copy
if [ ! -f "$work/.copied" ] || [ "$src" != "$(cat "$work/.copied")" ]; then
    rm -rf "$work"
    mkdir -p "$work"
    cp -a "$src/." "$work/"
    echo "$src" > "$work/.copied"
fi

cd "$work"

flags=(--with-compat)
if [ -f conf_flags ]; then
    # shellcheck disable=SC1091
    . ./conf_flags
    flags=("${NGX_CONF_FLAGS[@]}")
fi

if [ ! -f objs/Makefile ] || [ "$top/config" -nt objs/Makefile ]; then
    ./configure "${flags[@]}" ${NGX_EXTRA_FLAGS:-} \
        --add-dynamic-module="$top" > "$out/configure.log" 2>&1 || {
        tail -30 "$out/configure.log" >&2
        exit 1
    }
fi

make -f objs/Makefile modules -j2 > "$out/make.log" 2>&1 || {
    grep -E "error|warning" "$out/make.log" | head -40 >&2
    tail -20 "$out/make.log" >&2
    exit 1
}

cp objs/ngx_http_rate_limit_module.so "$out/ngx_http_rate_limit_module.so"
echo "built $out/ngx_http_rate_limit_module.so"

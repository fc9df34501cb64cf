#!/bin/bash
# Builds ngx_http_rate_limit_module.so against an nginx source tree: by
# default Debian's nginx-dev build tree (/usr/share/nginx/src) with the
# configure flags of the packaged nginx, so the stock binary loads it.
#
#   scripts/build-module.sh [OUT_DIR]
#   NGINX_SRC=/path/to/nginx-1.22.1 scripts/build-module.sh
#   NGX_CC_OPT='-fsanitize=address' NGX_LD_OPT=... scripts/build-module.sh DIR
#
# NGX_CC_OPT and NGX_LD_OPT reach configure as --with-cc-opt and
# --with-ld-opt, spaces and all (NGX_EXTRA_FLAGS is split on spaces); a
# change of either configures and builds the tree afresh.  By default they
# are Debian's build flags (dpkg-buildflags: -O2, the hardening flags), as
# for the packaged nginx and its module packages; where dpkg-buildflags is
# missing, nginx's own defaults apply.  NGX_CC_OPT= (empty) asks for those.
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

if command -v dpkg-buildflags > /dev/null; then
    : "${NGX_CC_OPT=$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS) -fPIC}"
    : "${NGX_LD_OPT=$(dpkg-buildflags --get LDFLAGS) -Wl,-z,now -fPIC}"
fi

extra=()
[ -n "${NGX_CC_OPT:-}" ] && extra+=("--with-cc-opt=$NGX_CC_OPT")
[ -n "${NGX_LD_OPT:-}" ] && extra+=("--with-ld-opt=$NGX_LD_OPT")
opts="${NGX_CC_OPT:-}|${NGX_LD_OPT:-}"

# objects built with other options are not rebuilt by make: start afresh
if [ "$opts" != "$(cat objs/.rl-opts 2>/dev/null || echo '|')" ]; then
    rm -rf objs
fi

if [ ! -f objs/Makefile ] || [ "$top/config" -nt objs/Makefile ]; then
    ./configure "${flags[@]}" "${extra[@]}" ${NGX_EXTRA_FLAGS:-} \
        --add-dynamic-module="$top" > "$out/configure.log" 2>&1 || {
        tail -30 "$out/configure.log" >&2
        exit 1
    }
    echo "$opts" > objs/.rl-opts
fi

make -f objs/Makefile modules -j2 > "$out/make.log" 2>&1 || {
    grep -E "error|warning" "$out/make.log" | head -40 >&2
    tail -20 "$out/make.log" >&2
    exit 1
}

# a new file, renamed over the old: an nginx that has the old one mapped
# keeps it (copying over it in place crashes such an nginx)
cp objs/ngx_http_rate_limit_module.so "$out/.ngx_http_rate_limit_module.so.new"
mv -f "$out/.ngx_http_rate_limit_module.so.new" \
    "$out/ngx_http_rate_limit_module.so"
echo "built $out/ngx_http_rate_limit_module.so"

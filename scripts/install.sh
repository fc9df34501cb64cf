#!/bin/sh
# Installs the module the way Debian's libnginx-mod-* packages do:
#
#   $NGINX_MODULES_DIR/ngx_http_rate_limit_module.so
#   $NGINX_MODULES_AVAILABLE/mod-http-rate-limit.conf     the load_module line
#   $NGINX_MODULES_ENABLED/50-mod-http-rate-limit.conf    a symlink to it
#
#   scripts/install.sh install [MODULE.so]     (make install)
#   scripts/install.sh uninstall               (make uninstall)
#
# Environment (all optional):
#   DESTDIR                   staging root; the symlink still points to the
#                             final path, and nothing runs nginx
#   NGINX_MODULES_DIR         default /usr/lib/nginx/modules
#   NGINX_MODULES_AVAILABLE   default /usr/share/nginx/modules-available
#   NGINX_MODULES_ENABLED     default /etc/nginx/modules-enabled
#   NGINX_MODULE_PRIORITY     default 50 (the symlink's name prefix)
#   NGINX                     default /usr/sbin/nginx, for the "nginx -t" check
#
# Without DESTDIR, install checks the system configuration with "nginx -t"
# before and after; if it passed before and fails after (for example, an
# nginx of another version), the symlink is removed again and install fails.
# Nginx is never reloaded: do that yourself.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: install.sh install [MODULE.so] | uninstall}

destdir=${DESTDIR:-}
destdir=${destdir%/}
modules_dir=${NGINX_MODULES_DIR:-/usr/lib/nginx/modules}
available=${NGINX_MODULES_AVAILABLE:-/usr/share/nginx/modules-available}
enabled=${NGINX_MODULES_ENABLED:-/etc/nginx/modules-enabled}
prio=${NGINX_MODULE_PRIORITY:-50}
nginx=${NGINX:-/usr/sbin/nginx}

so=ngx_http_rate_limit_module.so
conf=mod-http-rate-limit.conf
link=$prio-$conf
pkg=libnginx-mod-http-rate-limit

# the Debian package owns the same paths: do not fight dpkg over them
package_installed() {
    [ -z "$destdir" ] || return 1
    command -v dpkg-query >/dev/null 2>&1 || return 1
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
        | grep -q "install ok installed"
}

nginx_t() {
    "$nginx" -t -q >/dev/null 2>&1
}

case $cmd in
install)
    module=${2:-$top/build/$so}
    [ -f "$module" ] || {
        echo "install: no $module; run 'make build' first" >&2
        exit 1
    }
    if package_installed; then
        echo "install: the package $pkg is installed and owns these files;" \
             "remove it first (apt remove $pkg)" >&2
        exit 1
    fi

    check=no
    if [ -z "$destdir" ] && [ -x "$nginx" ] && nginx_t; then
        check=yes
    fi

    # nginx's prefix (/usr/share/nginx) has modules -> /usr/lib/nginx/modules
    if [ "$modules_dir" = /usr/lib/nginx/modules ]; then
        load="modules/$so"
    else
        load="$modules_dir/$so"
    fi

    install -d -m 755 "$destdir$modules_dir" "$destdir$available" \
        "$destdir$enabled"
    install -m 644 "$module" "$destdir$modules_dir/$so"
    printf 'load_module %s;\n' "$load" > "$destdir$available/$conf.tmp"
    chmod 644 "$destdir$available/$conf.tmp"
    mv -f "$destdir$available/$conf.tmp" "$destdir$available/$conf"
    ln -sfn "$available/$conf" "$destdir$enabled/$link"

    echo "installed $destdir$modules_dir/$so"
    echo "installed $destdir$available/$conf ($(cat "$destdir$available/$conf"))"
    echo "enabled   $destdir$enabled/$link -> $available/$conf"

    if [ $check = yes ]; then
        if ! out=$("$nginx" -t 2>&1); then
            rm -f "$destdir$enabled/$link"
            echo "install: 'nginx -t' fails with the module loaded; it is" \
                 "installed but no longer enabled:" >&2
            printf '%s\n' "$out" | grep -v '\[info\]' | sed 's/^/    /' >&2
            exit 1
        fi
        echo "nginx -t passes with the module loaded; reload nginx to use it" \
             "(systemctl reload nginx)"
    fi
    ;;

uninstall)
    if package_installed; then
        echo "uninstall: the files belong to the package $pkg;" \
             "use apt remove $pkg" >&2
        exit 1
    fi
    if [ -L "$destdir$enabled/$link" ]; then
        rm -f "$destdir$enabled/$link"
        echo "removed $destdir$enabled/$link"
    fi
    for f in "$destdir$available/$conf" "$destdir$modules_dir/$so"; do
        if [ -e "$f" ]; then
            rm -f "$f"
            echo "removed $f"
        fi
    done
    [ -n "$destdir" ] || echo "reload nginx to unload the module" \
                             "(systemctl reload nginx)"
    ;;

*)
    echo "usage: install.sh install [MODULE.so] | uninstall" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# make install / make uninstall.
#   install.sh BUILD_DIR DESTDIR CNI_BIN_DIR CNI_CONF_DIR PREFIX
#   install.sh --uninstall "" DESTDIR CNI_BIN_DIR CNI_CONF_DIR PREFIX
# Installs the plugins into CNI_BIN_DIR, the conflist examples and plugin READMEs under
# PREFIX/share/doc/tether (never into CNI_CONF_DIR: a conflist there is a live network), and the
# DNS daemon's systemd unit. DNSNAME_ALIAS=1 also installs dns-sidecar as `dnsname`, the name
# podman's generated conflists use.
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGINS=(bridge host-local portmap dns-sidecar)
uninstall=0
if [ "${1:-}" = --uninstall ]; then
  uninstall=1
  shift
fi
build=$1 destdir=$2 bindir=$3 confdir=$4 prefix=$5
docdir="$destdir$prefix/share/doc/tether"
unitdir="$destdir/lib/systemd/system"
unit=packaging/tether-dns-sidecar.service

if [ "$uninstall" = 1 ]; then
  for p in "${PLUGINS[@]}"; do rm -f "$destdir$bindir/$p"; done
  # Only remove a dnsname that is ours (a link to dns-sidecar or a copy of it).
  if [ -L "$destdir$bindir/dnsname" ] && [ "$(readlink "$destdir$bindir/dnsname")" = dns-sidecar ]; then
    rm -f "$destdir$bindir/dnsname"
  fi
  rm -rf "$docdir"
  rm -f "$unitdir/$(basename "$unit")"
  echo "tether uninstalled from $destdir$bindir"
  exit 0
fi

install -d -m 0755 "$destdir$bindir" "$docdir"
for p in "${PLUGINS[@]}"; do
  if [ ! -x "$build/bin/$p" ]; then
    echo "install: $build/bin/$p is missing; run make build" >&2
    exit 1
  fi
  install -m 0755 "$build/bin/$p" "$destdir$bindir/$p"
done
if [ "${DNSNAME_ALIAS:-0}" = 1 ]; then
  ln -sfn dns-sidecar "$destdir$bindir/dnsname"
fi
[ -d conf-examples ] && cp -r conf-examples "$docdir/"
for p in plugins/*/README.md; do
  install -m 0644 "$p" "$docdir/$(basename "$(dirname "$p")").md"
done
if [ -f "$unit" ]; then
  install -d -m 0755 "$unitdir"
  sed "s|@CNI_BIN_DIR@|$bindir|g" "$unit" >"$unitdir/$(basename "$unit")"
fi
echo "tether installed into $destdir$bindir (examples in $docdir; conflists go in $confdir)"

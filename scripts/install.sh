#!/usr/bin/env bash
# make install / make uninstall.
#   install.sh BUILD_DIR DESTDIR CNI_BIN_DIR CNI_CONF_DIR PREFIX
#   install.sh --uninstall "" DESTDIR CNI_BIN_DIR CNI_CONF_DIR PREFIX
# Installs the plugins into CNI_BIN_DIR, the conflist examples and plugin READMEs under
# PREFIX/share/doc/tether (never into CNI_CONF_DIR: a conflist there is a live network), and the
# DNS daemon's systemd unit. DNSNAME_ALIAS=1 also installs dns-sidecar as `dnsname`, the name
# podman's generated conflists use.
#
# The installed plugins are stripped (the build's keep their debug info). DEBUG_DIR=/usr/lib/debug
# also installs each plugin's detached debug info where gdb and debuginfod clients look for it,
# by build ID: DEBUG_DIR/.build-id/<first 2 hex digits>/<the rest>.debug, the layout of Debian's
# -dbgsym packages; the stripped binary names that file in its .gnu_debuglink.
set -euo pipefail
cd "$(dirname "$0")/.."

# tether-agent and tether-dns are not plugins but daemons the plugins start from their own
# directory: the cluster agent, and dns-sidecar's DNS daemon.
PLUGINS=(bridge host-local portmap dns-sidecar loopback tether-agent tether-dns)
debugdir=${DEBUG_DIR:-}
uninstall=0
if [ "${1:-}" = --uninstall ]; then
  uninstall=1
  shift
fi
build=$1 destdir=$2 bindir=$3 confdir=$4 prefix=$5
docdir="$destdir$prefix/share/doc/tether"
unitdir="$destdir/lib/systemd/system"
units=(packaging/tether-dns-sidecar.service packaging/tether-agent.service)

# The binary's GNU build ID (hex), empty when it has none.
build_id() {
  LC_ALL=C readelf -n "$1" 2>/dev/null | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p' | head -1
}

debug_file() { echo "$destdir$debugdir/.build-id/${1:0:2}/${1:2}.debug"; }

# Installs built binary $1 as $2, stripped; with DEBUG_DIR its debug info goes beside, by build ID.
install_stripped() {
  local src=$1 dst=$2 tmp
  tmp=$(mktemp "$destdir$bindir/.install.XXXXXX")
  if [ -n "$debugdir" ]; then
    local id dbg
    id=$(build_id "$src")
    if [ -z "$id" ]; then
      echo "install: $src has no build ID; cannot place its debug info" >&2
      rm -f "$tmp"
      exit 1
    fi
    dbg=$(debug_file "$id")
    install -d -m 0755 "$(dirname "$dbg")"
    objcopy --only-keep-debug --compress-debug-sections "$src" "$dbg"
    chmod 0644 "$dbg"
    # dh_strip's flags for an executable; the debuglink names the .build-id file.
    objcopy --strip-all --remove-section=.comment --remove-section=.note \
      --add-gnu-debuglink="$dbg" "$src" "$tmp"
  else
    objcopy --strip-all --remove-section=.comment --remove-section=.note "$src" "$tmp"
  fi
  chmod 0755 "$tmp"
  mv -f "$tmp" "$dst"
}

if [ "$uninstall" = 1 ]; then
  for p in "${PLUGINS[@]}"; do
    # A stripped binary keeps its build ID: it names the debug file installed with it.
    if [ -n "$debugdir" ] && [ -f "$destdir$bindir/$p" ]; then
      id=$(build_id "$destdir$bindir/$p")
      if [ -n "$id" ]; then
        rm -f "$(debug_file "$id")"
        rmdir --ignore-fail-on-non-empty "$(dirname "$(debug_file "$id")")" 2>/dev/null || true
      fi
    fi
    rm -f "$destdir$bindir/$p"
  done
  # Only remove a dnsname that is ours (a link to dns-sidecar or a copy of it).
  if [ -L "$destdir$bindir/dnsname" ] && [ "$(readlink "$destdir$bindir/dnsname")" = dns-sidecar ]; then
    rm -f "$destdir$bindir/dnsname"
  fi
  rm -rf "$docdir"
  for unit in "${units[@]}"; do rm -f "$unitdir/$(basename "$unit")"; done
  echo "tether uninstalled from $destdir$bindir"
  exit 0
fi

install -d -m 0755 "$destdir$bindir" "$docdir"
for p in "${PLUGINS[@]}"; do
  if [ ! -x "$build/bin/$p" ]; then
    echo "install: $build/bin/$p is missing; run make build" >&2
    exit 1
  fi
  install_stripped "$build/bin/$p" "$destdir$bindir/$p"
done
if [ "${DNSNAME_ALIAS:-0}" = 1 ]; then
  ln -sfn dns-sidecar "$destdir$bindir/dnsname"
fi
[ -d conf-examples ] && cp -r conf-examples "$docdir/"
for p in plugins/*/README.md; do
  install -m 0644 "$p" "$docdir/$(basename "$(dirname "$p")").md"
done
for unit in "${units[@]}"; do
  [ -f "$unit" ] || continue
  install -d -m 0755 "$unitdir"
  sed "s|@CNI_BIN_DIR@|$bindir|g" "$unit" >"$unitdir/$(basename "$unit")"
done
echo "tether installed into $destdir$bindir (examples in $docdir; conflists go in $confdir)"
[ -n "$debugdir" ] && echo "debug info in $destdir$debugdir/.build-id"
exit 0

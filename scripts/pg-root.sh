#!/usr/bin/env bash
# PostgreSQL majors other than the machine's own (15, Debian bookworm) live in Debian root file
# systems of the suite that ships them, built with debootstrap and Debian's own binary packages of
# the server, its headers, pgvector and pg_cron. Inside, PostgreSQL is installed exactly as on a
# user's Debian machine (/usr/lib/postgresql/N/bin/pg_config, dpkg knows postgresql-N), so the
# package test checks our .deb's dependencies against the real packages, never forced.
#
# Why roots and not a build on this machine: Debian's *source* packages of postgresql-17/18 and of
# pgvector 0.8.7 are listed by the archive here but their files are not served (HTTP 404), while
# the binary packages are; those binaries need the glibc of their own suite (trixie 2.41, forky
# 2.43), newer than bookworm's 2.36, so they run in a root of that suite.
#
#   pg-root.sh N setup            create or update the root for major N (idempotent, cached)
#   pg-root.sh N run CMD [ARG..]  run CMD as root inside it, in a private mount namespace where the
#                                 repository (same path), the Rust toolchain (~/.cargo, ~/.rustup)
#                                 and /proc, /dev are mounted; the mounts vanish when CMD exits
#   pg-root.sh N shell CMD        the same with a shell command line (bash -c)
#   pg-root.sh N bare CMD [ARG..] run CMD inside with only /proc and /dev mounted: nothing of the
#                                 repository or its build output is reachable (the package test)
#   pg-root.sh N path             print the root's directory
#   pg-root.sh N stop             stop every server of the root (pg_ctl of each data dir found)
#   pg-root.sh N remove           delete the root (CI frees its disk once a major has passed);
#                                 refuses while anything is mounted below it
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$here/scripts/env.sh"   # PGVECTOR_DEB

# The one table of supported majors: major -> Debian suite that ships it. 15 is this machine's
# own (bookworm); its root serves the package test only (scripts/package-test.sh).
suite_for() {
  case "$1" in
    15) echo bookworm ;;
    17) echo trixie ;;
    18) echo forky ;;
    *) echo "pg-root: no Debian suite known for PostgreSQL $1 (supported: 15, 17, 18)" >&2; return 1 ;;
  esac
}
# pgvector: the suite's own binary package, except where the suite's is older than the 0.8.0 the
# extension needs (bookworm ships 0.4.1): there a .deb built in the root from Debian's pgvector
# source package (PGVECTOR_DEB of env.sh, the version scripts/setup.sh builds for this machine).
PGVECTOR_SOURCE_VERSION="$PGVECTOR_DEB"
pgvector_from_source() { [ "$1" = 15 ]; }

N="${1:?usage: pg-root.sh N setup|run|shell|path|stop}"
cmd="${2:?usage: pg-root.sh N setup|run|shell|path|stop}"
shift 2
suite="$(suite_for "$N")"
roots="${ES_ROOTS:-/var/cache/embedstack/roots}"
root="$roots/pg$N"
mirror="${ES_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What a root holds: the server, its headers (pgrx's bindgen), pgvector and pg_cron as Debian
# packages; clang/libclang for bindgen; sudo for `cargo pgrx test --runas`; python3 for the
# package checks (scripts/package.sh).
pkgs=("postgresql-$N" "postgresql-server-dev-$N" "postgresql-$N-pgvector" "postgresql-$N-cron"
      libclang-dev clang gcc make pkg-config sudo ca-certificates dpkg-dev python3)
if pgvector_from_source "$N"; then
  pkgs=("${pkgs[@]/#postgresql-$N-pgvector/debhelper}" postgresql-server-dev-all build-essential)
fi
stamp="$root/.embedstack-root"
want_stamp="suite=$suite packages=${pkgs[*]}"

log() { printf '[pg-root %s] %s\n' "$N" "$*"; }

in_root() { # in_root CMD...: chroot without the repository mounts (set-up steps)
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

setup() {
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ]; then
    log "root $root ($suite) present"
    return
  fi
  command -v debootstrap >/dev/null || {
    log "apt-get install debootstrap"
    apt-get install -y -qq debootstrap >/dev/null
  }
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    log "debootstrap $suite into $root"
    rm -rf "$root.tmp"
    mkdir -p "$roots"
    # bookworm's debootstrap has no script named after every later suite; `sid`'s is the generic one.
    script=/usr/share/debootstrap/scripts/$suite
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    debootstrap --variant=minbase "$suite" "$root.tmp" "$mirror" "$script" >"$roots/debootstrap-pg$N.log" 2>&1 \
      || { tail -20 "$roots/debootstrap-pg$N.log" >&2; exit 1; }
    mv "$root.tmp" "$root"
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  # Mirrors that serve a snapshot of the archive carry Release files past their Valid-Until date.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99embedstack"
  # No service starts inside the root, and no default cluster: tests make their own.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  mkdir -p "$root/etc/postgresql-common"
  echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
  log "apt-get install ${pkgs[*]}"
  mount_basic
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$roots/apt-pg$N.log" 2>&1 \
    || { umount_basic; tail -20 "$roots/apt-pg$N.log" >&2; exit 1; }
  if pgvector_from_source "$N"; then
    build_pgvector || { umount_basic; exit 1; }
  fi
  in_root apt-get clean
  umount_basic
  in_root /usr/lib/postgresql/"$N"/bin/pg_config --version >/dev/null
  echo "$want_stamp" >"$stamp"
  log "root ready: $(in_root dpkg-query -W -f='${Package} ${Version}, ' "postgresql-$N" "postgresql-$N-pgvector" "postgresql-$N-cron")"
}

# Debian's pgvector source package, built into .debs in the root (tests skipped: -Pnocheck) and
# installed with dpkg, so that dpkg knows postgresql-N-pgvector as it would from the archive. Its
# real build dependencies are in pkgs; -d skips only the check of `architecture-is-64-bit`, a
# marker package that bookworm does not have.
build_pgvector() {
  log "building pgvector $PGVECTOR_SOURCE_VERSION from Debian's source package"
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" >"$root/etc/apt/sources.list.d/embedstack-trixie-src.sources"
  in_root apt-get update -qq
  in_root bash -c "set -e; rm -rf /usr/src/pgvector; mkdir -p /usr/src/pgvector; cd /usr/src/pgvector
    apt-get source -qq pgvector=$PGVECTOR_SOURCE_VERSION
    cd pgvector-*/
    pg_buildext updatecontrol   # debian/control lists the suite's PostgreSQL majors (trixie: 17)
    DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -b -uc -us -d -Pnocheck
    dpkg -i ../postgresql-$N-pgvector_${PGVECTOR_SOURCE_VERSION}_*.deb" >"$roots/pgvector-pg$N.log" 2>&1 \
    || { tail -20 "$roots/pgvector-pg$N.log" >&2; return 1; }
}

mount_basic() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --rbind /dev "$root/dev"
}
umount_basic() {
  umount -R "$root/dev" 2>/dev/null || umount -l "$root/dev" 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || umount -l "$root/proc" 2>/dev/null || true
}

# Enter the root in a private mount namespace (unshare -m): every mount below belongs to that
# namespace alone and disappears with it, so nothing is left mounted if a test is killed.
enter() { # enter CMD...   (ES_BARE=1: without the repository and toolchain mounts)
  [ -f "$stamp" ] || { echo "pg-root: no root for PostgreSQL $N; run: $0 $N setup" >&2; exit 1; }
  local repo="$here" home="${HOME:-/root}"
  if [ "${ES_BARE:-0}" = 1 ]; then repo=/nonexistent home=/nonexistent; fi
  exec unshare -m --propagation private /usr/bin/env ES_IN_ROOT_REPO="$repo" ES_IN_ROOT_HOME="$home" \
    ES_IN_ROOT_DIR="$root" bash -c '
      set -e
      r="$ES_IN_ROOT_DIR"
      mount -t proc proc "$r/proc"
      mount --rbind /dev "$r/dev"
      mount -t tmpfs tmpfs "$r/dev/shm" 2>/dev/null || true
      for d in "$ES_IN_ROOT_REPO" "$ES_IN_ROOT_HOME/.cargo" "$ES_IN_ROOT_HOME/.rustup"; do
        [ -d "$d" ] || continue
        mkdir -p "$r$d"
        mount --bind "$d" "$r$d"
      done
      cd /
      exec chroot "$r" /usr/bin/env -i HOME="$ES_IN_ROOT_HOME" LANG=C.UTF-8 TERM=dumb \
        PATH="$ES_IN_ROOT_HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        RUSTUP_HOME="$ES_IN_ROOT_HOME/.rustup" CARGO_HOME="$ES_IN_ROOT_HOME/.cargo" \
        "$@"' bash "$@"
}

case "$cmd" in
  setup) setup ;;
  run) enter "$@" ;;
  shell) enter bash -c "cd '$here' && $*" ;;
  bare) ES_BARE=1 enter "$@" ;;
  path) echo "$root" ;;
  stop) [ -f "$stamp" ] && enter bash -c "cd '$here' && PG=$N bash scripts/cluster.sh stop" || true ;;
  remove)
    [ -d "$root" ] || exit 0
    # A bind mount of the repository or of /dev below the root would make rm delete through it.
    if findmnt -rn -o TARGET | grep -q -e "^$root/" -e "^$root\$"; then
      log "not removing $root: something is mounted below it (findmnt)"; exit 1
    fi
    log "removing $root"
    rm -rf --one-file-system "$root" ;;
  *) echo "usage: pg-root.sh N setup|run|shell|path|stop|remove" >&2; exit 2 ;;
esac

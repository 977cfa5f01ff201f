#!/usr/bin/env bash
# ami-bridge lab: a real Asterisk 22 and sipp in a cached Debian chroot, on loopback.
#
#   lab/lab.sh build    build the chroot if it is missing (a few minutes, once)
#   lab/lab.sh up       build if needed, install the lab's config, start Asterisk
#   lab/lab.sh down     stop Asterisk (by PID) and every sipp agent the lab started
#   lab/lab.sh status   is it running?
#   lab/lab.sh cli CMD  run an Asterisk CLI command, e.g. 'pjsip show endpoints'
#   lab/lab.sh exec ... run a command inside the chroot (sipp, for instance)
#
# Environment: LAB_CACHE (default /var/cache/ami-bridge-lab) holds the chroot and the
# PID files; LAB_MIRROR overrides the Debian mirror (default: the host's own apt
# source). Must run as root (debootstrap, chroot).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${LAB_CACHE:-/var/cache/ami-bridge-lab}
root=$cache/chroot
pidfile=$cache/asterisk.pid
conf=/etc/ami-bridge-lab/asterisk.conf
packages=asterisk,asterisk-core-sounds-en-gsm,sip-tester,procps,iproute2

die() { echo "lab: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"; }

mirror() {
  if [ -n "${LAB_MIRROR:-}" ]; then echo "$LAB_MIRROR"; return; fi
  local m
  m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | grep -m1 debian || true)
  [ -n "$m" ] || m=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | grep -m1 debian || true)
  [ -n "$m" ] || die "no Debian mirror found in /etc/apt; set LAB_MIRROR"
  echo "$m"
}

build() {
  need_root
  if [ -x "$root/usr/sbin/asterisk" ] && [ -x "$root/usr/bin/sipp" ]; then return; fi
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  mkdir -p "$cache"
  rm -rf "$root.tmp"
  echo "lab: building the chroot in $root (a few minutes, once)" >&2
  debootstrap --variant=minbase --include="$packages" sid "$root.tmp" "$(mirror)" >"$cache/debootstrap.log" 2>&1 \
    || die "debootstrap failed, see $cache/debootstrap.log"
  rm -rf "$root"
  mv "$root.tmp" "$root"
}

# The PID file may outlive the process (a reboot, a killed session): check that the PID
# still belongs to an Asterisk before trusting it.
running() {
  [ -f "$pidfile" ] || return 1
  local pid; pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q asterisk
}

cli() { chroot "$root" /usr/sbin/asterisk -C "$conf" -rx "$*"; }

install_config() {
  # Fresh state on every start: config from the repo, empty spool and AstDB, so a
  # scenario recorded today looks like one recorded tomorrow (msg0000, ...).
  rm -rf "$root/etc/ami-bridge-lab" "$root/var/spool/ami-bridge-lab" "$root/var/lib/ami-bridge-lab" \
         "$root/var/run/ami-bridge-lab" "$root/var/log/ami-bridge-lab" "$root/opt/ami-bridge-lab"
  mkdir -p "$root/etc/ami-bridge-lab" "$root/var/spool/ami-bridge-lab/monitor" "$root/var/lib/ami-bridge-lab" \
           "$root/var/run/ami-bridge-lab" "$root/var/log/ami-bridge-lab" "$root/opt/ami-bridge-lab"
  cp "$here"/asterisk/*.conf "$root/etc/ami-bridge-lab/"
  make_tls_keys "$root/etc/ami-bridge-lab/keys"
  # The lab needs no DNS; without nameservers nothing is ever sent off the machine.
  echo "# ami-bridge lab: no DNS" >"$root/etc/resolv.conf"
}

# AMI over TLS (manager.conf tlsbindaddr 127.0.0.1:15039): a throwaway CA and a
# certificate for 127.0.0.1 it signed, new at every start. Clients verify with keys/ca.pem
# (on the host: $root/etc/ami-bridge-lab/keys/ca.pem).
make_tls_keys() {
  local d=$1
  command -v openssl >/dev/null || die "openssl is needed for AMI over TLS (apt-get install openssl)"
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
      -days 30 -subj "/CN=ami-bridge lab CA" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ami.ext
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ami.key -out ami.csr \
      -subj "/CN=127.0.0.1" 2>/dev/null
    openssl x509 -req -in ami.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ami.pem -days 30 \
      -extfile ami.ext 2>/dev/null
    rm -f ca.key ami.csr ami.ext ca.srl
    chmod 0644 ca.pem ami.pem; chmod 0600 ami.key
  ) || die "could not make the AMI TLS certificate in $d"
}

up() {
  need_root
  build
  if running; then echo "lab: Asterisk already running (pid $(cat "$pidfile"))"; return; fi
  install_config
  # chroot execs asterisk, so $! is Asterisk's own PID.
  chroot "$root" /usr/sbin/asterisk -f -n -C "$conf" >"$cache/asterisk.out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local i
  for i in $(seq 1 100); do
    # kill -0 only: our own child, whose cmdline can read empty while chroot execs it
    # (running() would then see no asterisk and we would give up on a healthy start)
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -20 "$cache/asterisk.out" >&2; die "Asterisk exited at start-up"
    fi
    if cli 'core waitfullybooted' >/dev/null 2>&1; then
      echo "lab: Asterisk up (pid $(cat "$pidfile")), AMI 127.0.0.1:15038 (TLS :15039), SIP udp 127.0.0.1:15060"
      check_listeners
      return
    fi
    sleep 0.2
  done
  down
  die "Asterisk did not finish booting in 20 s, see $cache/asterisk.out"
}

check_listeners() {
  # Every listener of the lab is on loopback. pjproject also opens two unconnected UDP
  # client sockets (IPv4, IPv6) on ephemeral ports for its DNS resolver; they serve
  # nothing and are left alone. Anything else off loopback stops the lab.
  local pid bad
  pid=$(cat "$pidfile")
  bad=$(ss -Hlnptu 2>/dev/null | grep "pid=$pid," | awk '{print $1, $5}' \
        | grep -Ev ' (127\.|\[::1\]|\[::ffff:127\.)' \
        | awk '{n=split($2,a,":"); if (!($1=="udp" && a[n]+0>=32768)) print $2}' || true)
  [ -z "$bad" ] || { down; die "Asterisk listens on non-loopback addresses: $bad"; }
}

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  local f
  # sipp agents started by the scenario driver leave their PIDs here.
  for f in "$cache"/sipp-*.pid; do
    [ -f "$f" ] || continue
    stop_pid "$(cat "$f")"; rm -f "$f"
  done
  if [ -f "$pidfile" ]; then
    running && stop_pid "$(cat "$pidfile")"
    rm -f "$pidfile"
    echo "lab: Asterisk stopped"
  fi
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  status) if running; then echo "running (pid $(cat "$pidfile"))"; else echo "stopped"; exit 3; fi ;;
  cli) shift; cli "$@" ;;
  exec) shift; chroot "$root" "$@" ;;
  root) echo "$root" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac

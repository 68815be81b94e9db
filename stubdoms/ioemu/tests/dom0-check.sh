#!/bin/sh
# Boot-test check, run in the test machine's dom0 (busybox sh) beside an HVM guest. DOMID and
# NAME name the guest; ./console.log holds its serial console so far, ./guest.cfg its xl
# configuration. Every line printed here is matched against the scenario's `dom0-expect`;
# `figure NAME VALUE` lines are also the figures `cargo xtask bench` reports.
#
# What runs follows the guest's configuration:
# - always: the device model starts (in a stub domain, or in dom0 when the configuration says
#   device_model_stubdomain_override = 0: the bench's reference), the guest's boot sector
#   prints on the serial console, QMP answers, and destroying the guest leaves nothing behind
#   (no stub domain, no vchan proxy, no dom0 QEMU); the memory used outside the guest;
# - a vif: dom0's DHCP server answers the guest's NIC (the firmware's network boot), and
#   QEMU has every NIC of the configuration;
# - a CD-ROM drive: `xl cd-insert` and `xl cd-eject`, which libxl before 4.20 must refuse
#   for a stub-domain guest, and 4.20 must carry out;
# - a counting boot sector (tests/serial-counter.hex): `xl save` and `xl restore`, after which
#   the count goes on from where it stopped, served by a new stub domain.
# Every xl call is bounded by `timeout`.

uptime_s() { cut -d' ' -f1 /proc/uptime; }
t0=$(uptime_s)
since() { awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_for SECONDS COMMAND...: retry the command every 0.2 s; give up early when the guest
# is gone (xl create failed), unless the check itself took it away.
wait_for() {
  n=$(($1 * 5)); shift
  while [ "$n" -gt 0 ]; do
    "$@" && return 0
    [ $((n % 5)) -eq 0 ] && [ -z "$away" ] && ! xenstore-exists "/local/domain/$DOMID" 2>/dev/null && return 1
    n=$((n - 1)); sleep 0.2
  done
  return 1
}
has() { grep -q -- "$1" guest.cfg; }
# The stub domain's console 0 (the init and QEMU) and, on failure, dom0's QEMU logs.
dm_log() { sed 's/^/dm-log: /' "/var/log/xen/qemu-dm-$NAME.log" 2>/dev/null; }
fail() {
  echo "FAILED: $*"
  if [ -n "$dhcpd" ]; then kill "$dhcpd" 2>/dev/null; sed 's/^/dhcp-log: /' udhcpd.log; fi
  [ -n "$follower" ] && kill "$follower" 2>/dev/null
  # The stub domain's devices as last seen while it was starting (libxl destroys a stub
  # domain that does not start in time).
  [ -f stub-xenstore.txt ] && sed 's/^/xenstore: /' stub-xenstore.txt
  [ -f restored.log ] && sed 's/^/restored-console: /' restored.log
  [ -n "$stub" ] && stub_log
  for f in /var/log/xen/*.log /var/log/xen/console/*.log; do
    [ -f "$f" ] && sed "s|^|$(basename "$f"): |" "$f"
  done
  exit 1
}
# The init's last lines, which it keeps in xenstore: the one place dom0 can read them when
# dom0's QEMU does not serve the stub domain's console 0.
# xenstore-read shows a newline as \n.
stub_log() {
  xenstore-read "/local/domain/$stub/data/ioemu-log" 2>/dev/null |
    awk '{ gsub(/\\n/, "\n"); print }' | sed 's/^/stub-log: /'
}
# The scenario's timeout sends TERM: show the logs before going.
trap 'fail "terminated by the scenario timeout"' TERM
away=
stub=
has '^device_model_stubdomain_override = 0$' || stub=pending

# dom0 processes whose command line has all the words given; pids, one per line.
pids_with() {
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline") || continue
    ok=1
    for w in "$@"; do case " $cmd " in *" $w "*) ;; *) ok= ;; esac; done
    [ -n "$ok" ] && echo "${p#/proc/}"
  done
}
# The resident memory of processes, in KiB, summed.
rss_kib() {
  s=0
  for p in "$@"; do
    r=$(awk '/^VmRSS:/ { r = $2 } END { print r + 0 }' "/proc/$p/status" 2>/dev/null)
    s=$((s + ${r:-0}))
  done
  echo "$s"
}

# DHCP for the guest's NIC on dom0's bridge: the NIC's iPXE option ROM asks for an address
# through QEMU's rtl8139, the tap and bridge the init set up, the stub domain's PV vif,
# dom0's netback and xenbr0; an ACK in udhcpd's log means packets went both ways.
dhcpd=
if has '^vif = .*bridge=' && has '^boot = .*n'; then
  cat > udhcpd.conf <<EOF
interface xenbr0
start 10.0.0.100
end 10.0.0.110
lease_file /tmp/udhcpd.leases
EOF
  touch /tmp/udhcpd.leases
  udhcpd -f udhcpd.conf > udhcpd.log 2>&1 &
  dhcpd=$!
fi

# The device model: the stub domain libxl made for the guest, running QEMU; or dom0's QEMU.
find_stub() { stub=$(xenstore-read "/local/domain/$DOMID/image/device-model-domid" 2>/dev/null); }
stub_running() {
  [ "$(xenstore-read "/local/domain/$stub/device-model/$DOMID/state" 2>/dev/null)" = running ] && return 0
  polls=$((polls + 1))
  [ $((polls % 25)) -eq 1 ] || return 1
  # While waiting, keep a view of the stub domain every 5 s for the failure report.
  {
    timeout 5 xl list 2>&1
    for p in "/local/domain/$stub/device" "/local/domain/0/backend/console/$stub" \
      "/local/domain/0/device-model/$stub" "/local/domain/$stub/console"; do
      xenstore-ls -f "$p" 2>/dev/null | grep -E '/(state|output|type|tty|ring-ref|port) '
    done
  } > stub-xenstore.new
  # Only a view of the live domain: libxl tears it down when it gives up.
  if grep -q "/device/" stub-xenstore.new; then mv stub-xenstore.new stub-xenstore.txt; fi
  return 1
}
start_stub() {
  polls=0
  wait_for 60 find_stub || fail "no stub domain for domain $DOMID"
  echo "stub domain $stub for guest $DOMID"
  wait_for 90 stub_running ||
    fail "/local/domain/$stub/device-model/$DOMID/state is '$(xenstore-read "/local/domain/$stub/device-model/$DOMID/state" 2>&1)'"
}
dom0_qemu() { qemu=$(pids_with -xen-domid "$DOMID" | head -n 1); [ -n "$qemu" ]; }
if [ -n "$stub" ]; then
  start_stub
  echo "device model state running after $(since) s"
  timeout 10 xl list | awk -v n="$NAME-dm" '$1 == n { print "stub domain memory " $3 " MiB, vcpus " $4 }'
else
  wait_for 60 dom0_qemu || fail "no QEMU in dom0 for domain $DOMID"
  echo "device model in dom0: QEMU pid $qemu"
fi

# The firmware boots the disk first: its boot sector's line on the guest's serial console
# (console.log) comes through QEMU's IDE and UART; the greeting sector then hands over to
# the next boot device, the NIC, whose iPXE ROM asks dom0 for an address.
booted() { grep -q -E 'STUBDOMS-HVM-BOOT-SECTOR-OK|STUBDOMS-COUNTER' console.log 2>/dev/null; }
if wait_for 90 booted; then echo "boot sector ran after $(since) s"; else echo "boot sector: no line on the serial console"; fi

# Memory used outside the guest: with a stub domain, its memory and the dom0 processes that
# serve it (the QEMU that backs its consoles, the vchan proxy); else dom0's QEMU.
if [ -n "$stub" ]; then
  dm_mib=$(timeout 10 xl list | awk -v n="$NAME-dm" '$1 == n { print $3 }')
  helpers=$(rss_kib $(pids_with -xen-domid "$stub") $(pids_with vchan-socket-proxy))
  echo "figure outside-guest-kib $((${dm_mib:-0} * 1024 + helpers))"
  echo "dom0 helpers of the stub domain: $helpers KiB resident"
  # What the init reports from inside (tests the figures reach dom0 on every release).
  mem=$(xenstore-read "/local/domain/$stub/data/ioemu-memory" 2>/dev/null)
  echo "stub domain figures: ${mem:-none}"
  for kv in $mem; do
    case "$kv" in
      available-kib=*) echo "figure stub-available-kib ${kv#*=}" ;;
      qemu-rss-kib=*) echo "figure stub-qemu-rss-kib ${kv#*=}" ;;
    esac
  done
else
  echo "figure outside-guest-kib $(rss_kib "$qemu")"
fi

if [ -n "$dhcpd" ]; then
  acked() { grep -q "sending ACK" udhcpd.log; }
  # iPXE starts only after the boot sector, and under TCG its exchange has taken over 100 s
  # with the machine's other HVM guest running beside it: the scenario's timeout bounds it.
  wait_for 240 acked || fail "no DHCP ACK in udhcpd's log after $(since) s"
  echo "dhcp: $(grep -m1 "sending ACK" udhcpd.log) after $(since) s"
  kill "$dhcpd" 2>/dev/null
  dhcpd=
  sed 's/^/dhcp-log: /' udhcpd.log
fi

# QMP: through vchan-socket-proxy with a stub domain. xl sends human-monitor-command.
# Bounded: a hang here must fail with its own message, not the scenario's timeout.
hmp() { timeout 30 xl qemu-monitor-command "$DOMID" "$1" 2>&1 || echo "no answer in 30 s"; }
echo "qmp: $(hmp 'info status')"
# Every NIC of the configuration reaches QEMU, each as a tap of its own.
if [ "$(grep -o 'mac=' guest.cfg | wc -l)" -gt 1 ]; then
  hmp 'info network' | sed 's/^/qmp-network: /'
fi

# Counter lines on a console log: the last (or first) count, in hex.
count() { grep -o 'STUBDOMS-COUNTER [0-9A-F][0-9A-F][0-9A-F][0-9A-F]' "$1" | "$2" -n 1 | cut -d' ' -f2; }

# Save and restore: the saved device state leaves the stub domain on its console 1, the
# restored one comes in on console 2 of a new stub domain.
follower=
serial=console.log
if [ -n "$stub" ] && grep -q STUBDOMS-COUNTER console.log; then
  three() { [ "$((0x$(count console.log tail)))" -ge 3 ]; }
  wait_for 30 three || fail "the guest's count does not move"
  old_stub=$stub
  away=1
  timeout 120 xl save "$DOMID" /tmp/guest.save > save.log 2>&1 || { cat save.log; fail "xl save failed"; }
  last=$(count console.log tail)
  echo "saved at count $last: $(ls -l /tmp/guest.save | awk '{ print $5 }') bytes"
  old_gone() { ! xenstore-exists "/local/domain/$old_stub" 2>/dev/null; }
  wait_for 30 old_gone || fail "stub domain $old_stub still exists after the save"
  timeout 120 xl restore /tmp/guest.save > restore.log 2>&1 || { cat restore.log; fail "xl restore failed"; }
  rm -f /tmp/guest.save
  DOMID=$(timeout 10 xl domid "$NAME") || fail "no domain $NAME after the restore"
  away=
  start_stub
  [ "$stub" != "$old_stub" ] || fail "the restored guest has the old stub domain $stub"
  echo "restored as domain $DOMID with stub domain $stub after $(since) s"
  timeout 200 xl console "$NAME" < /dev/null > restored.log 2>&1 &
  follower=$!
  counted() { [ -n "$(count restored.log head)" ]; }
  wait_for 60 counted || fail "no count on the restored guest's serial console"
  first=$(count restored.log head)
  [ "$((0x$first))" -gt "$((0x$last))" ] || fail "the restored guest counts $first, not on from $last"
  echo "count went on from $last to $first on the restored guest"
  serial=restored.log
fi

# CD-ROM change (on the restored guest, when there is one). libxl before 4.20 refuses it for
# a stub-domain guest; 4.20 ejects the medium over QMP, swaps the stub domain's PV disk and
# hands QEMU the fdset the init made for the new xvdc (opaque stub-devid:<devid>). After
# `xl cd-eject` the drive stays empty: libxl hands an empty drive to dom0's QEMU as a
# `qdisk` backend for the stub domain, which Debian 13's QEMU refuses ("Could not stat file
# ''"), and libxl then fails to swap it for a new medium or to restore a guest saved so.
cd_drive() { hmp 'info block' | grep -E -A1 'ide1-cd0|ide-5632'; }
if has 'devtype=cdrom' && [ -n "$stub" ]; then
  release=$(timeout 10 xl info | awk '$1 == "xen_version" { print $3 }')
  echo "cdrom before: $(cd_drive | tr '\n' ' ')"
  dd if=/dev/zero of=/tmp/cd-new.iso bs=1024 count=2048 2>/dev/null
  before=$(count "$serial" tail)
  out=$(timeout 60 xl cd-insert "$DOMID" hdc /tmp/cd-new.iso 2>&1); rc=$?
  case "$release" in
    4.1[0-9].*)
      [ "$rc" -ne 0 ] || fail "libxl $release accepted a CD-ROM change for a stub-domain guest"
      echo "cd-insert: refused by libxl $release: $(echo "$out" | tail -n 1)"
      ;;
    *)
      [ "$rc" -eq 0 ] || fail "xl cd-insert failed on $release: $out"
      inserted() { cd_drive | grep -q '/dev/fdset/'; }
      wait_for 20 inserted || fail "QEMU has no medium after cd-insert: $(cd_drive)"
      echo "cd-insert: $(cd_drive | tr '\n' ' ')"
      # What the stub domain's drive looks like, for a failure report.
      vbds() {
        xenstore-ls -f "/local/domain/$stub/device/vbd/5632" "/local/domain/0/backend/vbd/$stub/5632" \
          "/local/domain/0/backend/qdisk/$stub/5632" 2>&1 |
          grep -E '/(state|params|device-type|backend|online|physical-device|hotplug-status) '
      }
      timeout 60 xl cd-eject "$DOMID" hdc || fail "xl cd-eject failed; drive: $(vbds | tr '\n' ' ')"
      ejected() { cd_drive | grep -q 'not inserted'; }
      wait_for 20 ejected || fail "the medium is still in QEMU after cd-eject: $(cd_drive)"
      echo "cd-eject: $(cd_drive | tr '\n' ' ')"
      ;;
  esac
  # The guest runs on: its count moves.
  moved() { [ "$(count "$serial" tail)" != "$before" ]; }
  wait_for 20 moved || fail "the guest stopped counting after the CD-ROM change"
  echo "guest still counting after the CD-ROM change: $before -> $(count "$serial" tail)"
fi

# Destroying the guest takes its device model with it.
[ -n "$follower" ] && kill "$follower" 2>/dev/null
[ -n "$stub" ] && stub_log > stub-log.txt
away=1
timeout 30 xl destroy "$DOMID" || fail "xl destroy $DOMID failed or took over 30 s"
if [ -n "$stub" ]; then
  stub_gone() { ! xenstore-exists "/local/domain/$stub" 2>/dev/null && ! timeout 10 xl list "$stub" >/dev/null 2>&1; }
  wait_for 30 stub_gone || fail "stub domain $stub still exists after destroying $DOMID"
  echo "stub domain $stub gone after destroy"
  proxy_gone() { [ -z "$(pids_with vchan-socket-proxy)" ]; }
  wait_for 10 proxy_gone || fail "vchan-socket-proxy still runs: $(pids_with vchan-socket-proxy)"
  echo "vchan-socket-proxy gone"
  # The stub domain's log reaches dom0 through its console 0, which dom0's QEMU serves. From
  # QEMU 8.2 that backend waits for a frontend state Linux never writes for a primary
  # console, so the log stays empty there: name the QEMU, for the expectation to tell that
  # known gap from a log gone missing.
  cat stub-log.txt
  if [ -s "/var/log/xen/qemu-dm-$NAME.log" ]; then
    dm_log
  else
    echo "dm-log: empty, dom0's $(/usr/libexec/xen-qemu-system-i386 --version 2>&1 | head -n 1)"
  fi
else
  qemu_gone() { ! kill -0 "$qemu" 2>/dev/null; }
  wait_for 30 qemu_gone || fail "dom0's QEMU $qemu still runs after destroying $DOMID"
  echo "dom0's QEMU gone after destroy"
fi

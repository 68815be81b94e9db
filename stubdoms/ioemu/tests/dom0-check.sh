#!/bin/sh
# Boot-test check, run in the test machine's dom0 (busybox sh) beside an HVM guest whose
# device model is the ioemu stub domain. DOMID and NAME name the guest; ./console.log holds
# its serial console so far. Every line printed here is matched against `dom0-expect`.
# Checks, in order: the stub domain exists and runs, QEMU in it reports `running` in
# xenstore, SeaBIOS ran on the device model, QMP answers through the vchan proxy, and
# destroying the guest removes the stub domain and its proxy.

uptime_s() { cut -d' ' -f1 /proc/uptime; }
t0=$(uptime_s)
since() { awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }
# wait_for SECONDS COMMAND...: retry the command every 0.2 s; give up early when the guest
# is gone (xl create failed).
wait_for() {
  n=$(($1 * 5)); shift
  while [ "$n" -gt 0 ]; do
    "$@" && return 0
    [ $((n % 5)) -eq 0 ] && ! xl list "$DOMID" >/dev/null 2>&1 && [ -z "$destroyed" ] && return 1
    n=$((n - 1)); sleep 0.2
  done
  return 1
}
# The stub domain's console 0 (the init and QEMU) and, on failure, dom0's QEMU logs.
dm_log() { sed 's/^/dm-log: /' "/var/log/xen/qemu-dm-$NAME.log" 2>/dev/null; }
fail() {
  echo "FAILED: $*"
  for f in /var/log/xen/*.log; do sed "s|^|$(basename "$f"): |" "$f"; done
  exit 1
}
# The scenario's timeout sends TERM: show the logs before going.
trap 'fail "terminated by the scenario timeout"' TERM
destroyed=

stub_id() { stub=$(xenstore-read "/local/domain/$DOMID/image/device-model-domid" 2>/dev/null); }
wait_for 60 stub_id || fail "no stub domain for domain $DOMID"
echo "stub domain $stub for guest $DOMID"

dm=/local/domain/$stub/device-model/$DOMID
is_running() { [ "$(xenstore-read "$dm/state" 2>/dev/null)" = running ]; }
wait_for 90 is_running || fail "$dm/state is '$(xenstore-read "$dm/state" 2>&1)'"
echo "device model state running after $(since) s"
xl list | awk -v n="$NAME-dm" '$1 == n { print "stub domain memory " $3 " MiB, vcpus " $4 }'

# SeaBIOS logs to Xen's debug port (the runner matches those `(dN)` lines on the
# hypervisor console against `expect`). Give it the time to probe the devices QEMU emulates
# before destroying the guest: wait for its last line in `xl dmesg`, at most 60 s (xl
# dmesg is not reliable beside a running xl create here, so a miss is not a failure).
seabios_done() { xl dmesg 2>/dev/null | grep "(d$DOMID)" | grep -q -e "Press ESC" -e "No bootable device" -e "Booting from"; }
if wait_for 60 seabios_done; then echo "seabios done after $(since) s"; else echo "seabios: not seen in xl dmesg"; fi

# QMP through vchan-socket-proxy: xl sends human-monitor-command, which runs query-status.
echo "qmp: $(xl qemu-monitor-command "$DOMID" 'info status' 2>&1)"

destroyed=1
xl destroy "$DOMID" || fail "xl destroy $DOMID"
stub_gone() { ! xenstore-exists "/local/domain/$stub" 2>/dev/null && ! xl list "$stub" >/dev/null 2>&1; }
wait_for 30 stub_gone || fail "stub domain $stub still exists after destroying $DOMID"
echo "stub domain $stub gone after destroy"
proxy_gone() { ! ps | grep -v grep | grep -q "vchan-socket-proxy.* $stub "; }
wait_for 10 proxy_gone || fail "vchan-socket-proxy for $stub still runs"
echo "vchan-socket-proxy gone"
dm_log

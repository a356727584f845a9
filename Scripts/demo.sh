#!/usr/bin/env bash
# make demo: seed a real (small) ext4 disk to a local target, change files in it, replicate the
# change incrementally, verify the replica three independent ways, and print a summary; then
# show the operations side (plan, status, one pass id through both logs, a support bundle); then
# replicate a VMDK chain (checked against qemu-img) and the disk with Active Block Mapping.
# Goes through a private OpenSSH server on 127.0.0.1 when the SSH transport is available
# (DEMO_TRANSPORT=ssh|exec; default ssh when /usr/sbin/sshd exists).
set -euo pipefail
BIN=${VZREPL_BIN:?set VZREPL_BIN to the folder holding vzrepl-source and vzrepl-target}
DEMO=${DEMO_DIR:-/var/tmp/vzrepl-demo}
TRANSPORT=${DEMO_TRANSPORT:-ssh}
HERE=$(cd "$(dirname "$0")/.." && pwd)
[ -x /usr/sbin/sshd ] && [ -f "$HERE/Scripts/ssh-fixture.sh" ] || TRANSPORT=exec

rm -rf "$DEMO"; mkdir -p "$DEMO/content" "$DEMO/root" "$DEMO/logs"
cleanup() { [ -f "$DEMO/ssh/sshd.pid.fixture" ] && kill "$(cat "$DEMO/ssh/sshd.pid.fixture")" 2>/dev/null || true; }
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

say "creating a 256 MiB ext4 disk with files (mkfs.ext4 -d, no mount needed)"
head -c 24M /dev/urandom > "$DEMO/content/database.bin"
for i in $(seq 1 400); do echo "2026-11-25 03:12:$((i % 60)) web01 GET /index.html 200 $((i * 37))"; done > "$DEMO/content/access.log"
seq 1 200000 > "$DEMO/content/numbers.txt"
mkfs.ext4 -q -F -L demo -d "$DEMO/content" "$DEMO/disk0.raw" 256M

# --log-file, not --log-dir: the appliance's forced command (ssh) adds --log-dir /var/log/vzrepl
# after it, and a log file named outright wins over any log directory.
TARGET_CMD=("$BIN/vzrepl-target" serve --stdio --root "$DEMO/root" --log-file "$DEMO/logs/vzrepl-target.log")
if [ "$TRANSPORT" = ssh ]; then
  say "starting a private sshd on 127.0.0.1 with the appliance's configuration"
  # shellcheck source=Scripts/ssh-fixture.sh
  source "$HERE/Scripts/ssh-fixture.sh"
  start_sshd "$DEMO/ssh" "$(printf '%q ' "${TARGET_CMD[@]}")"
  TARGET_JSON=$(printf '{"transport": "ssh", "host": "127.0.0.1", "port": %s, "user": "%s", "identity": "%s", "hostKeySHA256": "%s"}' \
    "$SSHD_PORT" "$SSHD_USER" "$SSHD_CLIENT_KEY" "$SSHD_FINGERPRINT")
else
  TARGET_JSON=$(python3 -c 'import json,sys; print(json.dumps({"transport": "exec", "command": sys.argv[1:]}))' "${TARGET_CMD[@]}")
fi
cat > "$DEMO/job.json" <<JSON
{"job": "demo-vm", "mode": "differential", "blockSize": 1048576, "whitespace": true,
 "target": $TARGET_JSON,
 "disks": [{"name": "disk0", "source": "$DEMO/disk0.raw"}]}
JSON

run_pass() {
  "$BIN/vzrepl-source" replicate --job "$DEMO/job.json" --log-dir "$DEMO/logs" \
    >"$DEMO/$1.events" 2>>"$DEMO/logs/stderr.log" || { echo "pass '$1' failed:"; cat "$DEMO/$1.events"; exit 1; }
}
field() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "disk-finished": print(e[sys.argv[2]])' "$1" "$2"; }

say "seed pass ($TRANSPORT transport)"
run_pass seed

say "changing the disk: a new 3 MiB file, one file deleted (debugfs writes the image in place)"
head -c 3M /dev/urandom > "$DEMO/new.bin"
debugfs -w -R "write $DEMO/new.bin new.bin" "$DEMO/disk0.raw" >/dev/null 2>&1
debugfs -w -R "rm numbers.txt" "$DEMO/disk0.raw" >/dev/null 2>&1

say "incremental pass"
run_pass incremental

say "verifying the replica"
"$BIN/vzrepl-target" verify --root "$DEMO/root" --job demo-vm --disk disk0
cmp "$DEMO/disk0.raw" "$DEMO/root/demo-vm/disk0-flat.vmdk" && echo "cmp: replica equals the source byte for byte"
qemu-img compare -q -f raw -F vmdk "$DEMO/disk0.raw" "$DEMO/root/demo-vm/disk0.vmdk" && echo "qemu-img compare: identical"
e2fsck -fn "$DEMO/root/demo-vm/disk0-flat.vmdk" >/dev/null 2>&1 && echo "e2fsck: the replica's file system is clean"

mib() { python3 -c "print(f'{int(\"$1\") / 1048576:8.1f} MiB')"; }
say "summary"
printf '%-12s %-14s %-14s %-14s %-14s %s\n' pass scanned changed zeros sent seconds
for p in seed incremental; do
  printf '%-12s %-14s %-14s %-14s %-14s %s\n' "$p" "$(mib "$(field "$DEMO/$p.events" scannedBytes)")" \
    "$(mib "$(field "$DEMO/$p.events" changedBytes)")" "$(mib "$(field "$DEMO/$p.events" zeroBytes)")" \
    "$(mib "$(field "$DEMO/$p.events" sentBytes)")" "$(field "$DEMO/$p.events" seconds)"
done

say "operations: a dry run (plan) after one more change, the target's status, one pass's story in both logs, a support bundle"
head -c 2M /dev/urandom > "$DEMO/new2.bin"
debugfs -w -R "write $DEMO/new2.bin new2.bin" "$DEMO/disk0.raw" >/dev/null 2>&1
"$BIN/vzrepl-source" plan --job "$DEMO/job.json" --json --log-dir "$DEMO/logs" 2>>"$DEMO/logs/stderr.log" | python3 -c 'import json,sys
for l in sys.stdin:
    e = json.loads(l)
    if e["event"] == "disk-plan":
        print("plan %s: would send %d blocks (%.1f MiB on the wire), %.1f MiB unchanged; the target is not touched"
              % (e["disk"], e["dataBlocks"], e["sentBytes"] / 1048576, e["unchangedBytes"] / 1048576))'
"$BIN/vzrepl-target" status --root "$DEMO/root"
PASS=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "pass-started": print(e["passId"])' "$DEMO/incremental.events")
echo "grep pass=$PASS (the incremental pass in both agents' logs; time, level, subsystem, message):"
show_log() { grep -h "pass=$PASS" "$DEMO/logs/vzrepl-$1.log" | grep -v 'msg="target stderr' | python3 -c 'import re,sys
for l in sys.stdin:
    f = dict(re.findall(r"(\w[\w.]*)=(\"(?:[^\"\\]|\\.)*\"|\S*)", l))
    print("  %-7s %s %-7s %-16s %s" % (sys.argv[1], f["ts"][11:23], f["level"], f["subsystem"], f["msg"].strip("\"")[:80]))' "$1"; }
{ show_log source; show_log target; } | sort -k2,2 > "$DEMO/pass-story.txt"
head -n 12 "$DEMO/pass-story.txt"
echo "  ... $(grep -c "pass=$PASS" "$DEMO/logs/vzrepl-source.log") source and $(grep -c "pass=$PASS" "$DEMO/logs/vzrepl-target.log") target lines"
"$BIN/vzrepl-target" diagnose --root "$DEMO/root" --log-dir "$DEMO/logs" --output "$DEMO/target-bundle.tar.gz" >/dev/null 2>>"$DEMO/logs/stderr.log"
echo "vzrepl-target diagnose: $DEMO/target-bundle.tar.gz holds"
tar tzf "$DEMO/target-bundle.tar.gz" > "$DEMO/target-bundle.txt"
head -n 8 "$DEMO/target-bundle.txt" | sed 's/^/  /'; echo "  ... $(wc -l < "$DEMO/target-bundle.txt") entries"

# A job file for DISK_SOURCE under job name $1, with extra top-level fields $2 (JSON, may be empty).
write_job() {
  cat > "$DEMO/job-$1.json" <<JSON
{"job": "$1", "blockSize": 65536, $2 "target": $TARGET_JSON,
 "disks": [{"name": "disk0", "source": "$3"}]}
JSON
}
run_job() {
  "$BIN/vzrepl-source" replicate --job "$DEMO/job-$1.json" --log-dir "$DEMO/logs" \
    >"$DEMO/$1.events" 2>>"$DEMO/logs/stderr.log" || { echo "pass of job '$1' failed:"; cat "$DEMO/$1.events"; exit 1; }
}

say "a VMDK chain: the disk as a hosted sparse base, plus a snapshot delta written on top, replicated as one disk"
(cd "$DEMO" && qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse disk0.raw chain-base.vmdk \
   && qemu-img create -q -f vmdk -b chain-base.vmdk -F vmdk chain-snap.vmdk \
   && qemu-io -f vmdk -c "write -P 0x5a 8M 2M" chain-snap.vmdk >/dev/null)
write_job demo-vmdk "" "$DEMO/chain-snap.vmdk"
run_job demo-vmdk
qemu-img convert -q -f vmdk -O raw "$DEMO/chain-snap.vmdk" "$DEMO/chain-oracle.raw"
cmp "$DEMO/chain-oracle.raw" "$DEMO/root/demo-vmdk/disk0-flat.vmdk" \
  && echo "cmp: the replica equals qemu-img convert -O raw of the chain, byte for byte"
echo "sent $(mib "$(field "$DEMO/demo-vmdk.events" sentBytes)") for a $(mib "$(field "$DEMO/demo-vmdk.events" capacityBytes)") disk (unallocated grains are neither read nor sent)"

say "Active Block Mapping on the ext4 disk: only blocks the file system uses are read and sent"
write_job demo-abm "\"abm\": true, \"workDir\": \"$DEMO/work\"," "$DEMO/disk0.raw"
run_job demo-abm
e2fsck -fn "$DEMO/root/demo-abm/disk0-flat.vmdk" >/dev/null 2>&1 && echo "e2fsck: the ABM replica's file system is clean"
echo "active $(mib "$(field "$DEMO/demo-abm.events" activeBytes)") of $(mib "$(field "$DEMO/demo-abm.events" capacityBytes)"), sent $(mib "$(field "$DEMO/demo-abm.events" sentBytes)")"
echo
echo "events: $DEMO/*.events; logs: $DEMO/logs/"

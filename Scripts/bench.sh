#!/usr/bin/env bash
# `make bench`: vzrepl's throughput beside standard tools over the same data, in one run.
#
#   VZREPL_BIN=DIR Scripts/bench.sh        (DIR holds the release vzrepl-source and vzrepl-target)
#
# On a mixed image (a third each of random data, compressible text and zeros, interleaved in
# 8 MiB chunks; Scripts/make-mixed-image.sh) it measures, as MB/s (10^6 bytes/s) and as ratios
# (the machine is noisy; the ratios are what to compare):
#   - seed (exec transport)   vs  lz4 -1 -c IMAGE | lz4 -d -c > FILE          (issue 2, aim >= 1.0)
#   - no-change diff. pass    vs  openssl dgst -sha256 IMAGE                  (issue 2, aim >= 1.5)
#   - peak resident memory of both agents (source: VmHWM sampled by a monitor; target: GNU
#     time -v wrapped around it in the job file's command)                    (issue 2)
#   - incremental pass overwriting ~25% of the data blocks: applied MB/s with the undo journal
#     vs the same pass from the same replica state with VZREPL_UNSAFE_NO_JOURNAL=1
#                                                                              (issue 4, aim >= 0.60)
#   - seed through a private sshd on 127.0.0.1 vs lz4 -1 | ssh -c aes256-ctr | lz4 -d > FILE,
#     unpinned                                                           (issues 3, 12, aim >= 1.3)
#     and pinned: the source side (vzrepl-source; lz4 and ssh) on one CPU, a second sshd and all
#     it spawns (vzrepl-target; lz4 -d) on another, like two hosts      (issue 12, aim >= 1.2)
#     plus, pinned, for information, the same pipe with ssh -c aes256-gcm@openssh.com (the cipher
#     vzrepl-source negotiates with the vendored libssh2)
#     Prints "skipped: <reason>" when sshd is missing or the SSH seed fails; never fails the bench.
#   - a flat VMDK (a vmfs descriptor over the image) vs the raw image, no-change passes
#                                                                              (issue 9, aim >= 0.90)
#   - seed of a three-link sparse VMDK chain, 64x virtual to allocated, vs qemu-img convert -O raw
#     of the same chain; the replica is compared with qemu's output             (issue 9)
# Every replica is compared with the image (cmp).
#
# Environment:
#   BENCH_SIZE      image size, e.g. 256M for a quick run (default 2G)
#   BENCH_TMPDIR    where the work directory goes (default /var/tmp; needs ~4x BENCH_SIZE free)
#   BENCH_ROUNDS    rounds per comparison (default 2): each round runs both sides, alternating
#                   which goes first, and the best of each side counts
#   BENCH_KEEP=1    keep the work directory (logs, job files, events) instead of deleting it
#
# Progress goes to stderr, the results table to stdout. Exit 0 when every measurement ran and
# every replica matched its image; 1 otherwise (the table is still printed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- preconditions

need() {  # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found (apt-get install $2)"
}
need lz4 lz4
need openssl openssl
need python3 python3
need cmp diffutils
need ssh-keygen openssh-client
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"

bin="${VZREPL_BIN:-}"
if [[ -z "$bin" ]]; then
    bin=$(cd "$repo" && swift build -c release --show-bin-path 2>/dev/null) ||
        die "VZREPL_BIN is not set and 'swift build --show-bin-path' failed; run 'make bench'"
fi
bin=$(cd "$bin" 2>/dev/null && pwd) || die "VZREPL_BIN '$bin' is not a directory"
for exe in vzrepl-source vzrepl-target; do
    [[ -x "$bin/$exe" ]] || die "$bin/$exe is missing; build first (make build, or swift build -c release)"
done

to_bytes() {
    local s="${1^^}" n unit
    s="${s%IB}"; s="${s%B}"
    [[ "$s" =~ ^([0-9]+)([KMGT]?)$ ]] || { echo "not a size: '$1' (use e.g. 2G, 256M)" >&2; return 1; }
    n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[2]}"
    case "$unit" in "") echo "$n" ;; K) echo $((n << 10)) ;; M) echo $((n << 20)) ;;
                    G) echo $((n << 30)) ;; T) echo $((n << 40)) ;; esac
}
size=$(to_bytes "${BENCH_SIZE:-2G}") || die "bad BENCH_SIZE"
block=1048576
(( size >= 16 * block )) || die "BENCH_SIZE must be at least 16M"
unset VZREPL_UNSAFE_NO_JOURNAL   # only the one reference run sets it

base="${BENCH_TMPDIR:-/var/tmp}"
[[ -d "$base" && -w "$base" ]] || die "BENCH_TMPDIR '$base' is not a writable directory"
fstype=$(stat -f -c %T "$base")
[[ "$fstype" == tmpfs ]] && say "note: $base is tmpfs; set BENCH_TMPDIR to a disk-backed directory for realistic numbers"
avail=$(df -B1 --output=avail "$base" | tail -1 | tr -d ' ')
(( avail > 4 * size + (256 << 20) )) ||
    die "$base has $((avail >> 20)) MiB free; the bench needs about $(((4 * size) >> 20)) MiB (set BENCH_TMPDIR or BENCH_SIZE)"

# ---------------------------------------------------------------- work directory, cleanup

work=$(mktemp -d "$base/vzrepl-bench.XXXXXX")
sshd_pids=()
stop_sshd() {
    local p
    for p in "${sshd_pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    sshd_pids=()
}
cleanup() {
    local rc=$?
    stop_sshd
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        say "kept the work directory $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

img="$work/mixed.img"
failures=0
pass_timeout=$((300 + size / 5000000))   # seconds; generous (5 MB/s), only to bound a hang

# monitor.py OUT CMD...: runs CMD, samples its VmHWM (peak RSS) every 5 ms, and writes
# "Maximum resident set size (kbytes): N" (GNU time's wording) and the wall seconds to OUT.
# A pass that outlives $pass_timeout seconds is stopped (exit 124), so a hung pass cannot hang
# the bench.
cat >"$work/monitor.py" <<'PY'
import os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
peak = 0
def sample(pid):
    global peak
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except (OSError, ValueError):
        pass
limit = float(os.environ.get("BENCH_PASS_TIMEOUT") or 0)
t0 = time.monotonic()
p = subprocess.Popen(cmd)
timed_out = False
while p.poll() is None:
    sample(p.pid)
    if limit and time.monotonic() - t0 > limit and not timed_out:
        timed_out = True
        sys.stderr.write("bench: the pass ran longer than %.0f s; stopping it\n" % limit)
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    time.sleep(0.005)
t1 = time.monotonic()
with open(out, "w") as f:
    f.write("Maximum resident set size (kbytes): %d\nElapsed wall seconds: %.3f\nExit status: %d\n"
            % (peak, t1 - t0, p.returncode))
sys.exit(124 if timed_out else p.returncode if p.returncode >= 0 else 128 - p.returncode)
PY

# ---------------------------------------------------------------- helpers

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / 1e6 / s; else print "inf" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "inf") printf "%.2f", a / b; else print "n/a" }'; }

# Both sides read the image from the page cache, and nobody pays for an earlier run's writeback.
warm() { sync; cat "$img" >/dev/null; }

# A field of the last disk-finished event in an events file (empty when there is none).
finished() {
    python3 - "$1" "$2" <<'PY'
import json, sys
value = ""
for line in open(sys.argv[1], errors="replace"):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("event") == "disk-finished" and sys.argv[2] in e:
        value = e[sys.argv[2]]
print(value)
PY
}

# Why a run failed: its last error event, else the last line on stderr, else the exit code.
reason() {  # reason EVENTS STDERR RC
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
msg = ""
try:
    for line in open(sys.argv[1], errors="replace"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "error":
            msg = "%s: %s" % (e.get("kind", "error"), e.get("message", ""))
except OSError:
    pass
if not msg:
    try:
        lines = [l.strip() for l in open(sys.argv[2], errors="replace") if l.strip()]
        msg = lines[-1] if lines else ""
    except OSError:
        pass
print(("%s (exit %s)" % (msg, sys.argv[3]) if msg else "exit code %s" % sys.argv[3]).replace("\n", " ")[:300])
PY
}

# Peak RSS in MiB, the largest over GNU time -v style files (one per run); waits briefly for
# each (the target's copy is written when the target exits, which may be just after the source).
rss() {
    local f i
    for f in "$@"; do
        for i in $(seq 50); do
            grep -q "Maximum resident set size" "$f" 2>/dev/null && break
            sleep 0.1
        done
    done
    awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); if ($2 + 0 > max) max = $2 + 0; found = 1 }
             END { if (found) printf "%.1f MiB", max / 1024; else printf "n/a" }' "$@" 2>/dev/null || printf "n/a"
}

# faster A B: succeeds when MB/s A beats B (B may be empty).
faster() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { exit !(a + 0 > b + 0) }'; }

# write_job FILE TARGET-JSON: the job file for one pass over the image.
write_job() {
    python3 - "$1" "$2" "$img" "$block" <<'PY'
import json, sys
path, target, img, block = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
job = {"job": "bench", "mode": "differential", "blockSize": block, "whitespace": True,
       "target": target, "disks": [{"name": "disk0", "source": img}]}
with open(path, "w") as f:
    json.dump(job, f, indent=1)
PY
}

# exec_target ROOT LABEL: the exec transport's target section, the target wrapped in GNU time.
exec_target() {
    python3 -c 'import json, sys; print(json.dumps({"transport": "exec", "command": sys.argv[1:]}))' \
        /usr/bin/time -v -o "$work/$2.target-time" \
        "$bin/vzrepl-target" serve --stdio --root "$1" --log-file "$work/$2.target.log"
}

# run_pass LABEL [VAR=VALUE...]: one vzrepl-source pass over $work/LABEL.job.
# Sets pass_rc and pass_secs (wall clock); events, stderr and logs stay in $work/LABEL.*.
# The source's peak RSS is sampled from /proc/PID/status VmHWM by a small monitor rather than
# taken from GNU time: wait4() folds the peak of reaped children (here the exec-spawned
# target) into the parent's ru_maxrss, so `time -v vzrepl-source` would report max(source,
# target). The monitor also takes the wall-clock time around the source alone.
pass_prefix=()   # run_pass runs vzrepl-source under this (taskset for the pinned SSH row)
run_pass() {
    local label="$1"; shift
    warm
    pass_rc=0
    env BENCH_PASS_TIMEOUT="$pass_timeout" "$@" python3 "$work/monitor.py" "$work/$label.source-time" \
        "${pass_prefix[@]}" "$bin/vzrepl-source" replicate --job "$work/$label.job" --log-file "$work/$label.source.log" \
        >"$work/$label.events" 2>"$work/$label.stderr" || pass_rc=$?
    pass_secs=$(awk '/^Elapsed wall seconds:/ { print $NF }' "$work/$label.source-time")
    if (( pass_rc == 0 )); then
        say "  $label: ${pass_secs}s wall; disk-finished: changed $(finished "$work/$label.events" changedBytes)," \
            "sent $(finished "$work/$label.events" sentBytes), zero $(finished "$work/$label.events" zeroBytes)," \
            "scanned $(finished "$work/$label.events" scannedBytes) bytes in $(finished "$work/$label.events" seconds)s"
    fi
}

show_logs() {  # on a hard failure: what the agents said
    local label="$1" f
    for f in "$work/$label.stderr" "$work/$label.target.log"; do
        [[ -s "$f" ]] && { echo "--- tail of $f" >&2; tail -n 15 "$f" >&2; }
    done
    return 0
}

# check_replica ROOT: sets check to "identical" or what differs, and counts a mismatch as a
# failure (not run in $(...), so that the count survives).
check_replica() {
    local flat="$1/bench/disk0-flat.vmdk" out
    if [[ ! -f "$flat" ]]; then
        failures=$((failures + 1)); check="MISSING ($flat)"
    elif out=$(cmp "$img" "$flat" 2>&1); then
        check="identical"
    else
        failures=$((failures + 1)); check="DIFFERENT (${out//$work\//})"
    fi
}

rows=()
row() {  # row LABEL OURS-NAME OURS REF-NAME REF RATIO AIM
    rows+=("$(printf "%-24s %-8s %6s MB/s   %-16s %6s MB/s   ratio %5s  (aim >= %s)" "$@")")
}
notes=()

# ---------------------------------------------------------------- the image

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "vzrepl $("$bin/vzrepl-source" --version 2>/dev/null || echo '?'), bin $bin"
say "work directory $work ($fstype)"
say "making the mixed image ($((size >> 20)) MiB)"
"$here/make-mixed-image.sh" "$img" "$size" 2>&1 | sed 's/^/bench:   /' >&2
size=$(stat -c %s "$img")

# Each comparison runs in rounds that alternate the order (ours, reference / reference, ours)
# and keeps the best of each side, so a burst of load from elsewhere hits both alike.
rounds="${BENCH_ROUNDS:-2}"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer"
root="$work/root-exec"

seed_ours() {  # one seed into a fresh root
    local r="$1"
    say "seed (exec transport), round $r"
    rm -rf "$root"
    mkdir -p "$root"
    write_job "$work/seed-$r.job" "$(exec_target "$root" "seed-$r")"
    run_pass "seed-$r"
    (( pass_rc == 0 )) ||
        { show_logs "seed-$r"; die "the seed failed: $(reason "$work/seed-$r.events" "$work/seed-$r.stderr" "$pass_rc")"; }
    local m
    m=$(mbps "$size" "$pass_secs")
    ours_runs+="${ours_runs:+, }$m"
    faster "$m" "$ours_best" && ours_best=$m
    check_replica "$root"
    seed_checks+="${seed_checks:+, }$check"
}
seed_ref() {
    say "reference: lz4 -1 -c IMAGE | lz4 -d -c > FILE, round $1"
    local t0 t1 m
    warm
    t0=$(now)
    lz4 -1 -q -c "$img" | lz4 -d -q -c >"$work/ref.out"
    t1=$(now)
    say "  reference: $(elapsed "$t0" "$t1")s"
    rm -f "$work/ref.out"
    m=$(mbps "$size" "$(elapsed "$t0" "$t1")")
    ref_runs+="${ref_runs:+, }$m"
    faster "$m" "$ref_best" && ref_best=$m
    return 0
}
ours_best="" ref_best="" ours_runs="" ref_runs="" seed_checks=""
for ((r = 1; r <= rounds; r++)); do
    if (( r % 2 )); then seed_ours "$r"; seed_ref "$r"; else seed_ref "$r"; seed_ours "$r"; fi
done
row "seed (exec)" vzrepl "$ours_best" "lz4|lz4 -d" "$ref_best" "$(ratio "$ours_best" "$ref_best")" 1.0
seed_best=$ours_best
notes+=("seed runs: vzrepl $ours_runs MB/s, lz4|lz4 -d $ref_runs MB/s; replica vs image after each seed: $seed_checks")
seed_times=("$work"/seed-*.source-time) seed_ttimes=("$work"/seed-*.target-time)
rss_lines=("$(printf "%-24s source %10s   target %10s" "peak RSS seed" "$(rss "${seed_times[@]}")" "$(rss "${seed_ttimes[@]}")")")

# ---------------------------------------------------------------- no-change differential pass

nochange_ours() {
    local r="$1" m changed sent
    say "no-change differential pass, round $r"
    write_job "$work/nochange-$r.job" "$(exec_target "$root" "nochange-$r")"
    run_pass "nochange-$r"
    (( pass_rc == 0 )) || { show_logs "nochange-$r"
        die "the no-change pass failed: $(reason "$work/nochange-$r.events" "$work/nochange-$r.stderr" "$pass_rc")"; }
    m=$(mbps "$size" "$pass_secs")
    ours_runs+="${ours_runs:+, }$m"
    faster "$m" "$ours_best" && ours_best=$m
    changed=$(finished "$work/nochange-$r.events" changedBytes)
    sent=$(finished "$work/nochange-$r.events" sentBytes)
    [[ "$changed" == 0 ]] || { failures=$((failures + 1)); notes+=("no-change pass $r applied $changed bytes (expected 0)"); }
    nochange_sent+="${nochange_sent:+, }${sent:-?}"
}
nochange_ref() {
    say "reference: openssl dgst -sha256 IMAGE, round $1"
    local t0 t1 m
    warm
    t0=$(now)
    openssl dgst -sha256 "$img" >/dev/null
    t1=$(now)
    say "  reference: $(elapsed "$t0" "$t1")s"
    m=$(mbps "$size" "$(elapsed "$t0" "$t1")")
    ref_runs+="${ref_runs:+, }$m"
    faster "$m" "$ref_best" && ref_best=$m
    return 0
}
ours_best="" ref_best="" ours_runs="" ref_runs="" nochange_sent=""
for ((r = 1; r <= rounds; r++)); do
    if (( r % 2 )); then nochange_ours "$r"; nochange_ref "$r"; else nochange_ref "$r"; nochange_ours "$r"; fi
done
row "no-change pass (exec)" vzrepl "$ours_best" "openssl dgst" "$ref_best" "$(ratio "$ours_best" "$ref_best")" 1.5
notes+=("no-change runs: vzrepl $ours_runs MB/s (sent $nochange_sent bytes), openssl dgst $ref_runs MB/s")
nc_times=("$work"/nochange-*.source-time) nc_ttimes=("$work"/nochange-*.target-time)
rss_lines+=("$(printf "%-24s source %10s   target %10s" "peak RSS no-change pass" "$(rss "${nc_times[@]}")" "$(rss "${nc_ttimes[@]}")")")

# ---------------------------------------------------------------- journal cost (issue 4)

say "incremental pass: overwriting ~25% of the data blocks with new random data"
python3 - "$img" "$block" <<'PY' 2>&1 | sed 's/^/bench:   /' >&2
import os, sys
path, bs = sys.argv[1], int(sys.argv[2])
zero = bytes(bs)
data = []
with open(path, "rb") as f:
    i = 0
    while True:
        b = f.read(bs)
        if not b:
            break
        if b != zero[:len(b)]:
            data.append((i, len(b)))
        i += 1
chosen = data[::4]                      # every 4th data block: spread over random and text chunks
with open(path, "r+b") as f:
    for i, n in chosen:
        f.seek(i * bs)
        f.write(os.urandom(n))
    f.flush()
    os.fsync(f.fileno())
print("overwrote %d of %d data blocks (%d MiB)" % (len(chosen), len(data), sum(n for _, n in chosen) >> 20))
PY
pre="$work/root-pre"
cp -a --sparse=always "$root" "$pre"

# Every run starts from a copy of the same replica state. The runs alternate (J N, N J, ...) and
# the best of each variant counts, so neither side gains from its position in the sequence.
declare -A best=([journal]=0 [nojournal]=0) runs=([journal]="" [nojournal]="")
order=()
for ((r = 1; r <= rounds; r++)); do
    if (( r % 2 )); then order+=("journal $r" "nojournal $r"); else order+=("nojournal $r" "journal $r"); fi
done
for item in "${order[@]}"; do
    read -r variant r <<<"$item"
    label="incr-$variant-$r"
    envs=()
    [[ "$variant" == nojournal ]] && envs=(VZREPL_UNSAFE_NO_JOURNAL=1)
    say "incremental pass $r, $([[ $variant == journal ]] && echo "undo journal on" || echo "VZREPL_UNSAFE_NO_JOURNAL=1")"
    rm -rf "$root"
    cp -a --sparse=always "$pre" "$root"
    write_job "$work/$label.job" "$(exec_target "$root" "$label")"
    run_pass "$label" "${envs[@]}"
    if (( pass_rc != 0 )); then
        failures=$((failures + 1))
        notes+=("incremental ($variant, run $r) FAILED: $(reason "$work/$label.events" "$work/$label.stderr" "$pass_rc")")
        continue
    fi
    changed=$(finished "$work/$label.events" changedBytes)
    secs=$(finished "$work/$label.events" seconds)
    m=$(mbps "$changed" "$secs")
    runs[$variant]+="${runs[$variant]:+, }$m"
    awk -v a="$m" -v b="${best[$variant]}" 'BEGIN { exit !(a + 0 > b + 0) }' && best[$variant]=$m
    check_replica "$root"
    [[ "$check" == identical ]] || notes+=("incremental ($variant, run $r) replica vs image: $check")
done
incr_times=("$work"/incr-*.source-time) incr_ttimes=("$work"/incr-journal-*.target-time)
rss_lines+=("$(printf "%-24s source %10s   target %10s" "peak RSS incremental" "$(rss "${incr_times[@]}")" "$(rss "${incr_ttimes[@]}")")")
j=${best[journal]}; n=${best[nojournal]}
[[ "$j" == 0 ]] && j=n/a
[[ "$n" == 0 ]] && n=n/a
row "incremental apply" journal "$j" "no journal" "$n" "$(ratio "$j" "$n")" 0.60
notes+=("incremental: applied $(finished "$work/incr-journal-1.events" changedBytes) bytes per pass (changedBytes / disk-finished seconds, best of $rounds); \
journal runs ${runs[journal]:-none} MB/s, no-journal runs ${runs[nojournal]:-none} MB/s; replicas vs image checked after every run")
rm -rf "$pre" "$root"

# ---------------------------------------------------------------- seed through SSH (issues 3, 12)

# Two rows, each vzrepl-source over sshd vs lz4 -1 | ssh -c aes256-ctr | lz4 -d > FILE, same
# image, best of $rounds alternating rounds:
#   seed (ssh)           unpinned: every process may run on any core
#   seed (ssh, pinned)   the source side (vzrepl-source; lz4 and the ssh client) on one core and
#                        sshd with everything it spawns (vzrepl-target; lz4 -d) on another, as
#                        when the source and target are different hosts (issue 12)
# The pinned row runs against a second sshd started under taskset; it is skipped on one core.
ssh_row() { rows+=("$(printf "%-24s %s" "$1" "$2")"); }

ssh_bench() {
    local sshd=/usr/sbin/sshd d="$work/ssh" i fp out
    [[ -x "$sshd" ]] || { ssh_row "seed (ssh)" "skipped: $sshd not installed (apt-get install openssh-server)"; return; }
    command -v ssh >/dev/null || { ssh_row "seed (ssh)" "skipped: no ssh client (apt-get install openssh-client)"; return; }
    # The two cores of the pinned row: the first two this process may use.
    local cpus=() pin_src="" pin_dst=""
    read -r -a cpus <<<"$(python3 -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0))[:2])))')"
    if (( ${#cpus[@]} >= 2 )) && command -v taskset >/dev/null; then pin_src=${cpus[0]}; pin_dst=${cpus[1]}; fi
    say "seed through SSH: starting private sshds on 127.0.0.1"
    mkdir -p "$d" /run/sshd
    chmod 700 "$d"
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$d/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C bench-agent -f "$d/id_agent"      # forced to the agent
    ssh-keygen -q -t ed25519 -N '' -C bench-reference -f "$d/id_ref"    # plain shell, for lz4 -d
    local sroot="$work/root-ssh"
    local forced
    forced=$(printf '%q ' /usr/bin/time -v -o "$work/ssh-seed.target-time" \
        "$bin/vzrepl-target" serve --stdio --root "$sroot" --log-file "$work/ssh-seed.target.log")
    {
        echo "restrict,command=\"${forced% }\" $(cat "$d/id_agent.pub")"
        echo "restrict $(cat "$d/id_ref.pub")"
    } >"$d/authorized_keys"
    fp=$(ssh-keygen -lf "$d/host_ed25519.pub" | awk '{print $2}')
    : >"$d/known_hosts"

    # start_one NAME [CPU]: an sshd on a free port (taskset to CPU when given); sets port_NAME,
    # or start_error and fails.
    local port_free="" port_pinned="" start_error=""
    start_one() {
        local name=$1 cpu=${2:-} port
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        cat >"$d/sshd_config.$name" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $d/host_ed25519
PidFile $d/sshd.$name.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthenticationMethods publickey
Ciphers aes256-gcm@openssh.com,aes256-ctr
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512,hmac-sha2-256
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org
HostKeyAlgorithms ssh-ed25519
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
ClientAliveInterval 15
LogLevel INFO
EOF
        if ! out=$("$sshd" -t -f "$d/sshd_config.$name" 2>&1); then
            start_error="sshd -t rejected the configuration: ${out//$'\n'/ }"; return 1
        fi
        if [[ -n "$cpu" ]]; then
            taskset -c "$cpu" "$sshd" -D -e -f "$d/sshd_config.$name" 2>"$d/sshd.$name.log" &
        else
            "$sshd" -D -e -f "$d/sshd_config.$name" 2>"$d/sshd.$name.log" &
        fi
        sshd_pids+=("$!")
        for i in $(seq 100); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            kill -0 "${sshd_pids[-1]}" 2>/dev/null || break
            sleep 0.1
        done
        if ! kill -0 "${sshd_pids[-1]}" 2>/dev/null || ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            start_error="sshd did not start: $(tail -n 1 "$d/sshd.$name.log" 2>/dev/null)"; return 1
        fi
        echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >>"$d/known_hosts"
        printf -v "port_$name" %s "$port"
        say "  sshd pid ${sshd_pids[-1]} on 127.0.0.1:$port${cpu:+, pinned to CPU $cpu}, host key $fp"
    }
    if ! start_one free; then ssh_row "seed (ssh)" "skipped: $start_error"; stop_sshd; return; fi
    if [[ -n "$pin_dst" ]] && ! start_one pinned "$pin_dst"; then
        notes+=("ssh pinned: $start_error"); pin_src=""; pin_dst=""
    fi

    # ours LABEL PORT [CPU]: one vzrepl seed over sshd on PORT into a fresh root; sets m ("" on failure).
    ours() {
        local label=$1 port=$2 cpu=${3:-}
        m=""
        rm -rf "$sroot"; mkdir -p "$sroot"
        python3 - "$port" "$d/id_agent" "$fp" >"$work/$label.target.json" <<'PY'
import json, sys
print(json.dumps({"transport": "ssh", "host": "127.0.0.1", "port": int(sys.argv[1]), "user": "root",
                  "identity": sys.argv[2], "hostKeySHA256": sys.argv[3]}))
PY
        write_job "$work/$label.job" "$(cat "$work/$label.target.json")"
        [[ -n "$cpu" ]] && pass_prefix=(taskset -c "$cpu")
        run_pass "$label"
        pass_prefix=()
        if (( pass_rc == 0 )); then
            m=$(mbps "$size" "$pass_secs")
            check_replica "$sroot"
            [[ "$check" == identical ]] || notes+=("$label replica vs image: $check")
        else
            notes+=("$label failed: $(reason "$work/$label.events" "$work/$label.stderr" "$pass_rc")")
        fi
        rm -rf "$sroot"
    }
    # ref LABEL PORT [CPU [gcm]]: lz4 -1 | ssh -c aes256-ctr -m hmac-sha2-256 | lz4 -d > FILE (with
    # "gcm": ssh -c aes256-gcm@openssh.com, what vzrepl-source negotiates); sets m ("" on failure).
    ref() {
        local label=$1 port=$2 cpu=${3:-} ref_out="$work/ref-ssh.out" t0 t1 rc=0
        local pin=() crypto=(-c aes256-ctr -m hmac-sha2-256)
        [[ -n "$cpu" ]] && pin=(taskset -c "$cpu")
        [[ "${4:-}" == gcm ]] && crypto=(-c aes256-gcm@openssh.com)
        m=""
        warm
        t0=$(now)
        "${pin[@]}" lz4 -1 -q -c "$img" |
            timeout "$pass_timeout" "${pin[@]}" ssh -F /dev/null "${crypto[@]}" -i "$d/id_ref" -p "$port" \
                -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
                -o UserKnownHostsFile="$d/known_hosts" -o LogLevel=ERROR \
                root@127.0.0.1 "lz4 -d -q -c > $(printf %q "$ref_out")" 2>"$d/$label.stderr" || rc=$?
        t1=$(now)
        if (( rc == 0 )) && [[ "$(stat -c %s "$ref_out" 2>/dev/null)" == "$size" ]]; then
            m=$(mbps "$size" "$(elapsed "$t0" "$t1")")
            say "  $label: $(elapsed "$t0" "$t1")s"
        else
            notes+=("$label failed (exit $rc): $(tail -n 1 "$d/$label.stderr" 2>/dev/null)")
        fi
        rm -f "$ref_out"
    }

    # Rounds alternate the order, and each round runs the unpinned pair, then the pinned pair.
    local r side kind best_ours_free="" best_ref_free="" best_ours_pin="" best_ref_pin=""
    local runs_ours_free="" runs_ref_free="" runs_ours_pin="" runs_ref_pin="" best_gcm_pin="" runs_gcm_pin=""
    keep() {  # keep KEY: adds this run's $m to runs_KEY and keeps the fastest in best_KEY
        local -n runs_of="runs_$1" best_of="best_$1"
        runs_of+="${runs_of:+, }$m"
        if faster "$m" "$best_of"; then best_of=$m; fi
    }
    for ((r = 1; r <= rounds; r++)); do
        for kind in free pinned; do
            [[ $kind == pinned && -z "$pin_dst" ]] && continue
            local port cpu="" sides
            if [[ $kind == free ]]; then port=$port_free; else port=$port_pinned; cpu=$pin_src; fi
            sides=$( (( r % 2 )) && echo "ours ref" || echo "ref ours")
            # Pinned, also the same pipe with GCM, for information (it is not the issue's reference).
            [[ $kind == pinned ]] && sides=$( (( r % 2 )) && echo "$sides refgcm" || echo "refgcm $sides")
            for side in $sides; do
                case $side in
                    refgcm)
                        say "seed through SSH (pinned), lz4 -1 | ssh -c aes256-gcm@openssh.com | lz4 -d, round $r"
                        ref "ssh-refgcm-$r" "$port" "$cpu" gcm ;;
                    ours)
                        say "seed through SSH ($kind), vzrepl-source, round $r"
                        ours "ssh-seed-$kind-$r" "$port" "$cpu" ;;
                    ref)
                        say "seed through SSH ($kind), reference lz4 -1 | ssh -c aes256-ctr -m hmac-sha2-256 | lz4 -d, round $r"
                        ref "ssh-ref-$kind-$r" "$port" "$cpu" ;;
                esac
                [[ -n "$m" ]] && keep "${side/refgcm/gcm}_${kind/pinned/pin}"
            done
        done
    done
    stop_sshd
    rss_lines+=("$(printf "%-24s source %10s   target %10s" "peak RSS seed (ssh)" "$(rss "$work"/ssh-seed-*.source-time)" "$(rss "$work/ssh-seed.target-time")")")

    ssh_pair() {  # ssh_pair LABEL OURS REF
        if [[ -n "$2" ]]; then
            rows+=("$(printf "%-24s %-8s %6s MB/s   %-16s %6s MB/s   ratio %5s  (aim >= %s)" \
                "$1" vzrepl "$2" "lz4|ssh|lz4 -d" "${3:-n/a}" "$(ratio "$2" "${3:-0}")" "$4")")
        else
            ssh_row "$1" "vzrepl skipped: the seed failed (see the notes)"
            [[ -n "$3" ]] && rows+=("$(printf "%-24s %-8s %6s   %-16s %6s MB/s" "" "" "" "lz4|ssh|lz4 -d" "$3")")
        fi
    }
    ssh_pair "seed (ssh)" "$best_ours_free" "$best_ref_free" 1.3
    notes+=("ssh seed (unpinned) runs: vzrepl ${runs_ours_free:-none} MB/s, lz4|ssh|lz4 -d ${runs_ref_free:-none} MB/s")
    if [[ -n "$pin_dst" ]]; then
        ssh_pair "seed (ssh, pinned)" "$best_ours_pin" "$best_ref_pin" 1.2
        notes+=("ssh seed (pinned: source side on CPU $pin_src, sshd and what it spawns on CPU $pin_dst) runs: vzrepl ${runs_ours_pin:-none} MB/s, lz4|ssh|lz4 -d ${runs_ref_pin:-none} MB/s")
        if [[ -n "$best_ours_pin" && -n "$best_gcm_pin" ]]; then
            rows+=("$(printf "%-24s %-8s %6s MB/s   %-16s %6s MB/s   ratio %5s  (for information: the pipe with GCM)" \
                "seed (ssh, pinned)" vzrepl "$best_ours_pin" "lz4|ssh gcm|lz4" "$best_gcm_pin" "$(ratio "$best_ours_pin" "$best_gcm_pin")")")
        fi
        notes+=("ssh seed (pinned) with ssh -c aes256-gcm@openssh.com runs: ${runs_gcm_pin:-none} MB/s")
    else
        ssh_row "seed (ssh, pinned)" "skipped: needs two CPUs and taskset (util-linux)"
    fi
    return 0
}
ssh_bench

# ---------------------------------------------------------------- VMDK sources (issue 9)

# Flat VMDK vs raw: a descriptor (createType vmfs) whose one VMFS extent is the image itself, read
# by a no-change differential pass against the seeded replica, beside the same pass over the raw
# image. Aim: the flat VMDK at >= 90% of the raw speed.
vmdk_bench() {
    local r m ours_best="" ref_best="" ours_runs="" ref_runs="" sectors=$((size / 512)) vroot="$work/root-vmdk"
    printf '# Disk DescriptorFile\nversion=1\nCID=1234abcd\nparentCID=ffffffff\ncreateType="vmfs"\n\nRW %d VMFS "%s"\n' \
        "$sectors" "$(basename "$img")" >"$work/flat.vmdk"
    flat_pass() {  # flat_pass LABEL SOURCE
        python3 - "$work/$1.job" "$(exec_target "$vroot" "$1")" "$2" "$block" <<'PY'
import json, sys
path, target, src, block = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
json.dump({"job": "bench", "mode": "differential", "blockSize": block, "whitespace": True, "target": target,
           "disks": [{"name": "disk0", "source": src}]}, open(path, "w"), indent=1)
PY
        run_pass "$1"
        (( pass_rc == 0 )) || { show_logs "$1"; failures=$((failures + 1)); notes+=("$1 failed: $(reason "$work/$1.events" "$work/$1.stderr" "$pass_rc")"); return 1; }
        m=$(mbps "$size" "$pass_secs")
    }
    # The replica both sides compare with: a seed from the raw image (not measured).
    rm -rf "$vroot"; mkdir -p "$vroot"
    say "flat VMDK vs raw: seeding a replica to compare with"
    flat_pass flatseed "$img" || return 0
    for ((r = 1; r <= rounds; r++)); do
        for side in $( (( r % 2 )) && echo "vmdk raw" || echo "raw vmdk"); do
            say "no-change pass over the $side source, round $r"
            if [[ $side == vmdk ]]; then
                flat_pass "flatvmdk-$r" "$work/flat.vmdk" || return 0
                ours_runs+="${ours_runs:+, }$m"; faster "$m" "$ours_best" && ours_best=$m
            else
                flat_pass "flatraw-$r" "$img" || return 0
                ref_runs+="${ref_runs:+, }$m"; faster "$m" "$ref_best" && ref_best=$m
            fi
        done
    done
    row "flat VMDK vs raw" vmdk "$ours_best" "raw image" "$ref_best" "$(ratio "$ours_best" "$ref_best")" 0.90
    notes+=("flat VMDK no-change runs: $ours_runs MB/s; raw: $ref_runs MB/s")

    # A sparse chain of three links, virtual size 64x what is allocated: seeded by vzrepl, beside
    # qemu-img convert -O raw of the same chain; the replica must equal qemu's output.
    command -v qemu-img >/dev/null || { notes+=("sparse chain: skipped (no qemu-img)"); return 0; }
    local alloc=$((size / 2)) virt=$((size / 2 * 64)) chain="$work/chain" t0 t1 qs
    mkdir -p "$chain"
    say "sparse chain: $((virt >> 30)) GiB virtual, about $((alloc >> 20)) MiB allocated"
    truncate -s "$virt" "$chain/base.raw"
    dd if="$img" of="$chain/base.raw" bs=1M count=$((alloc >> 21)) conv=notrunc,sparse status=none
    dd if="$img" of="$chain/base.raw" bs=1M skip=$((alloc >> 21)) seek=$((virt >> 21)) count=$((alloc >> 21)) conv=notrunc,sparse status=none
    qemu-img convert -q -f raw -O vmdk -o subformat=monolithicSparse "$chain/base.raw" "$chain/base.vmdk"
    rm -f "$chain/base.raw"
    qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$chain/mid.vmdk" "$virt"
    qemu-io -f vmdk -c "write -P 0x5a 1M 16M" -c "write -P 0x5b $((virt - (64 << 20))) 8M" "$chain/mid.vmdk" >/dev/null
    qemu-img create -q -f vmdk -b mid.vmdk -F vmdk "$chain/leaf.vmdk" "$virt"
    qemu-io -f vmdk -c "write -P 0x6c 8M 4M" -c "write -z 2M 1M" "$chain/leaf.vmdk" >/dev/null
    local croot="$work/root-chain"
    rm -rf "$croot"; mkdir -p "$croot"
    python3 - "$work/chain.job" "$(exec_target "$croot" chain)" "$chain/leaf.vmdk" "$block" <<'PY'
import json, sys
path, target, src, block = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
json.dump({"job": "bench", "mode": "differential", "blockSize": block, "whitespace": True, "target": target,
           "disks": [{"name": "disk0", "source": src}]}, open(path, "w"), indent=1)
PY
    say "seed of the chain"
    run_pass chain
    (( pass_rc == 0 )) || { show_logs chain; failures=$((failures + 1)); notes+=("chain seed failed: $(reason "$work/chain.events" "$work/chain.stderr" "$pass_rc")"); return 0; }
    local chain_secs=$pass_secs
    say "reference: qemu-img convert -O raw of the chain"
    sync; t0=$(now)
    qemu-img convert -q -O raw "$chain/leaf.vmdk" "$work/chain-oracle.raw"
    t1=$(now); qs=$(elapsed "$t0" "$t1")
    say "  reference: ${qs}s"
    if cmp -s "$work/chain-oracle.raw" "$croot/bench/disk0-flat.vmdk"; then local cc="identical"; else
        failures=$((failures + 1)); local cc="DIFFERENT"; fi
    rm -f "$work/chain-oracle.raw"
    local seeded
    seeded=$(finished "$work/chain.events" sentBytes)
    rows+=("$(printf "%-24s vzrepl %8s s   qemu-img convert %8s s   ratio %5s  (virtual %d GiB, allocated ~%d MiB; replica %s)" \
        "sparse chain seed" "$chain_secs" "$qs" "$(ratio "$qs" "$chain_secs")" $((virt >> 30)) $((alloc >> 20)) "$cc")")
    notes+=("sparse chain: vzrepl seed ${chain_secs}s (sent $seeded bytes; at the mixed image's seed rate of $seed_best MB/s the ~$((alloc >> 20)) MiB allocated alone would take $(awk -v a="$alloc" -v s="$seed_best" 'BEGIN { if (s > 0) printf "%.1f", a / 1e6 / s; else print "?" }')s), qemu-img convert -O raw ${qs}s")
}
vmdk_bench

# ---------------------------------------------------------------- results

cores=$(nproc)
{
    echo
    echo "vzrepl bench: $((size >> 20)) MiB mixed image (random / text / zeros, 8 MiB chunks), block $((block >> 20)) MiB," \
         "$cores cores; MB = 10^6 bytes, wall clock, page cache warm, best of $rounds alternating rounds;" \
         "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s\n' "${rows[@]}"
    printf '%s\n' "${rss_lines[@]}"
    printf 'note: %s\n' "${notes[@]}"
} 

if (( failures > 0 )); then
    echo "bench: $failures check(s) failed (see above)" >&2
    exit 1
fi

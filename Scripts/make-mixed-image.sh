#!/usr/bin/env bash
# Makes the benchmark's mixed disk image: a third random data, a third compressible text,
# a third zeros, interleaved in chunks (random, text, zero, random, ...) so a scan mixes them.
#
#   Scripts/make-mixed-image.sh OUT [SIZE]
#
# SIZE: bytes, or with a binary suffix K, M, G (KiB, MiB, GiB also accepted); default 2G.
# CHUNK_SIZE (env): the interleave unit, default 8M.
#
# - random: getrandom(2) (the /dev/urandom generator), incompressible.
# - text:   log-like lines drawn from a pool of a few hundred varied lines, each with its own
#           sequence number and timestamp, so no two blocks are equal; lz4 -1 ratio about 4x.
# - zeros:  written out (not holes), as on a thick disk, so the source's white-space detection
#           does the work rather than a SEEK_HOLE skip; SPARSE_ZEROS=1 leaves them as holes.
# The image is written to OUT.tmp and renamed, so OUT is never half-made.
set -euo pipefail

usage() { echo "usage: $0 OUT [SIZE]   (SIZE like 2G, 256M, 1073741824; default 2G)" >&2; exit 2; }

# to_bytes SIZE -> prints the size in bytes, or fails.
to_bytes() {
    local s="${1^^}" n unit
    s="${s%IB}"; s="${s%B}"
    if [[ "$s" =~ ^([0-9]+)([KMGT]?)$ ]]; then
        n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[2]}"
        case "$unit" in
            "") echo "$n" ;;
            K) echo $(( n << 10 )) ;;
            M) echo $(( n << 20 )) ;;
            G) echo $(( n << 30 )) ;;
            T) echo $(( n << 40 )) ;;
        esac
    else
        echo "not a size: '$1' (use e.g. 2G, 256M or a byte count)" >&2
        return 1
    fi
}

[[ $# -ge 1 && $# -le 2 ]] || usage
out="$1"
size=$(to_bytes "${2:-2G}") || exit 2
chunk=$(to_bytes "${CHUNK_SIZE:-8M}") || exit 2
(( size > 0 )) || { echo "SIZE must be positive" >&2; exit 2; }
(( chunk >= 4096 )) || { echo "CHUNK_SIZE must be at least 4096 bytes" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed (apt-get install python3)" >&2; exit 1; }

tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT

python3 - "$tmp" "$size" "$chunk" "${SPARSE_ZEROS:-0}" <<'PY'
import os, random, sys

path, size, chunk, sparse = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rng = random.Random(20240501)

words = ("the a an of to in for on with at by from replica disk block server client request response "
         "error warning info debug session pass target source journal commit rollback snapshot volume "
         "datastore host network packet latency timeout retry user admin backup restore verify checksum "
         "sector extent cluster node service daemon kernel memory cache buffer queue").split()
hosts = ["web%02d" % i for i in range(1, 40)] + ["db%02d" % i for i in range(1, 9)]
procs = ["nginx", "sshd", "postgres", "kernel", "systemd", "cron", "vzrepl", "java", "redis"]
levels = ["INFO", "WARN", "DEBUG", "ERROR", "NOTICE"]

def pool_line():
    r = rng.randint
    return "%s %s[%d]: %s %s id=%d\n" % (rng.choice(hosts), rng.choice(procs), r(100, 65000),
                                         rng.choice(levels), " ".join(rng.choices(words, k=r(4, 12))),
                                         r(0, 10**6))

# ~300 distinct lines: enough variety that lz4 -1 lands near 4x, not a single repeated line.
pool = [pool_line() for _ in range(300)]
seq = 0

def text(n):
    global seq
    parts, have = [], 0
    while have < n:
        lines = rng.choices(pool, k=1000)
        s = "".join("%d.%03d %s" % (seq + i, rng.randrange(1000), l) for i, l in enumerate(lines))
        seq += 1000
        parts.append(s)
        have += len(s)
    return "".join(parts).encode()[:n]

counts = {"random": 0, "text": 0, "zero": 0}
with open(path, "wb") as f:
    f.truncate(size)                       # with SPARSE_ZEROS=1 the zero chunks stay holes
    off, i = 0, 0
    while off < size:
        n = min(chunk, size - off)
        kind = ("random", "text", "zero")[i % 3]
        f.seek(off)
        if kind == "random":
            f.write(os.urandom(n))
        elif kind == "text":
            f.write(text(n))
        elif not sparse:
            f.write(bytes(n))
        counts[kind] += n
        off += n
        i += 1
    f.flush()
    os.fsync(f.fileno())

mib = lambda b: b / 1048576
sys.stderr.write("mixed image %s: %.0f MiB = random %.0f MiB + text %.0f MiB + zeros %.0f MiB (chunks of %.0f MiB)\n"
                 % (path.removesuffix(".tmp"), mib(size), mib(counts["random"]), mib(counts["text"]),
                    mib(counts["zero"]), mib(chunk)))
PY

mv -f "$tmp" "$out"
trap - EXIT

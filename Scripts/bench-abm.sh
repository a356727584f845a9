#!/usr/bin/env bash
# `make bench`, ABM part: what Active Block Mapping costs and saves.
#
#   VZREPL_BIN=DIR Scripts/bench-abm.sh
#
#   1. a 1 TiB sparse GPT disk holding one ext4 filesystem, a 1 TiB NTFS and a 1 TiB XFS on a
#      whole disk: `vzrepl-source abm-map` time and the
#      metadata bytes it read (aim: seconds, metadata only);
#   2. a seed of a half-empty disk (BENCH_ABM_SIZE, default 1G: GPT, one ext4 whose files fill 40% of it,
#      and as much again of deleted data left in free blocks) with and without
#      "abm": true: bytes read and sent, and wall time (aim: ABM reads and sends roughly the used half).
# Every ABM replica is checked with e2fsck -fn and a file compare.
# Environment: BENCH_TMPDIR (default /var/tmp), BENCH_ABM_SIZE, BENCH_KEEP=1.
set -euo pipefail
bin=${VZREPL_BIN:?set VZREPL_BIN to the folder of the release binaries}
size=${BENCH_ABM_SIZE:-1G}
work=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/vzrepl-bench-abm.XXXXXX")
[[ "${BENCH_KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
export PATH=$PATH:/usr/sbin:/sbin
say() { echo "bench-abm: $*" >&2; }
field() { python3 -c 'import json,sys; d=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print([e for e in d if e["event"]==sys.argv[2]][0][sys.argv[3]])' "$@"; }

# 1. 1 TiB
big="$work/big.img"
truncate -s 1T "$big"
sgdisk -o -n 1:2048:0 -t 1:8300 "$big" >/dev/null
blocks=$(( ((1 << 40) - (2 << 20)) / 4096 ))
mke2fs -q -t ext4 -b 4096 -E offset=$((2048 * 512)),lazy_itable_init=1,lazy_journal_init=1 "$big" "$blocks"
map=$("$bin/vzrepl-source" abm-map --source "$big" --block-size 1048576)
rm -f "$big"
read -r secs meta active <<<"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["seconds"], d["metadataBytesRead"], d["activeBytes"])' "$map")"
truncate -s 1T "$big"
mkntfs -q -F -f -s 512 -c 4096 -p 0 -H 255 -S 63 "$big" $(( (1 << 40) / 512 - 1 )) >/dev/null 2>&1
map=$("$bin/vzrepl-source" abm-map --source "$big" --block-size 1048576)
rm -f "$big"
read -r nsecs nmeta nactive <<<"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["seconds"], d["metadataBytesRead"], d["activeBytes"])' "$map")"
truncate -s 1T "$big"
mkfs.xfs -q -f "$big"   # writes its 512 MiB log: the only allocated part of the image
map=$("$bin/vzrepl-source" abm-map --source "$big" --block-size 1048576)
rm -f "$big"
read -r xsecs xmeta xactive <<<"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["seconds"], d["metadataBytesRead"], d["activeBytes"])' "$map")"

# 2. half-empty disk
img="$work/half.img"
bytes=$(numfmt --from=iec "$size")
part_sectors=$(( bytes / 512 - 2048 - 34 ))
truncate -s "$size" "$img"
sgdisk -o -n 1:2048:0 -t 1:8300 "$img" >/dev/null
fs_blocks=$(( (bytes / 512 - 2048 - 40) * 512 / 4096 ))
mkdir -p "$work/src"
half=$(( bytes * 40 / 100 ))
head -c "$half" /dev/urandom > "$work/src/keep.bin"
head -c "$half" /dev/urandom > "$work/src/deleted.bin"
mke2fs -q -t ext4 -b 4096 -E offset=$((2048 * 512)) -d "$work/src" "$img" "$fs_blocks"
debugfs -w -R "rm /deleted.bin" "$img?offset=$((2048 * 512))" >/dev/null 2>&1
rm -f "$work/src/deleted.bin"
seed() {  # seed LABEL ABM
    mkdir -p "$work/$1.root"
    python3 - "$work/$1.job" "$img" "$work/$1.root" "$bin" "$2" "$work" <<'PY'
import json, sys
path, img, root, b, abm, work = sys.argv[1:]
json.dump({"job": "bench", "blockSize": 1048576, "abm": abm == "1", "workDir": work + "/wd",
           "target": {"transport": "exec", "command": [b + "/vzrepl-target", "serve", "--stdio", "--root", root,
                                                       "--log-file", work + "/target.log"]},
           "disks": [{"name": "disk0", "source": img}]}, open(path, "w"))
PY
    local t0 t1
    t0=$(date +%s.%N)
    "$bin/vzrepl-source" replicate --job "$work/$1.job" --log-file "$work/source.log" > "$work/$1.events" 2> "$work/$1.stderr"
    t1=$(date +%s.%N)
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') $(field "$work/$1.events" disk-finished scannedBytes) $(field "$work/$1.events" disk-finished sentBytes)"
}
read -r full_s full_read full_sent <<<"$(seed plain 0)"
read -r abm_s abm_read abm_sent <<<"$(seed abm 1)"
replica="$work/abm.root/bench/disk0-flat.vmdk"
dd if="$replica" of="$work/p1.img" bs=512 skip=2048 status=none
check=ok
e2fsck -fn "$work/p1.img" >/dev/null 2>&1 || check="e2fsck FAILED"
debugfs -R "cat /keep.bin" "$work/p1.img" 2>/dev/null | cmp -s - "$work/src/keep.bin" || check="$check; keep.bin differs"

echo
echo "vzrepl ABM bench: 1 TiB ext4/NTFS/XFS maps, and a seed of a $size disk with 40% files and 40% deleted data (block 1 MiB)"
printf '%-34s %8s s   metadata read %12s bytes   active %15s bytes   (aim: seconds)\n' "abm-map 1 TiB ext4" "$secs" "$meta" "$active"
printf '%-34s %8s s   metadata read %12s bytes   active %15s bytes   (aim: seconds)\n' "abm-map 1 TiB NTFS" "$nsecs" "$nmeta" "$nactive"
printf '%-34s %8s s   metadata read %12s bytes   active %15s bytes   (aim: seconds; the log is active)\n' "abm-map 1 TiB XFS" "$xsecs" "$xmeta" "$xactive"
printf '%-34s %8s s   read %15s   sent %15s\n' "seed without ABM" "$full_s" "$full_read" "$full_sent"
printf '%-34s %8s s   read %15s   sent %15s   (aim: about the used half)\n' "seed with ABM" "$abm_s" "$abm_read" "$abm_sent"
printf '%-34s %s\n' "ABM replica e2fsck -fn, keep.bin" "$check"
[[ "$check" == ok ]]

#!/usr/bin/env python3
"""Writes the XFS seeds of the abm fuzz target (Fuzz/corpus/abm/xfs-*): tiny hand-made XFS
filesystems (512-byte blocks, two AGs of 64 and 56 blocks, a 16-block internal log that ends
with an unmount record), from the layouts in ACTIVE-BLOCKS.md 4.1 and xfsprogs' xfs_format.h.
mkfs.xfs makes nothing under 16 MiB, too big for a fuzz input. Run from the repository root:
    python3 Fuzz/corpus/make-xfs-seeds.py Fuzz/corpus/abm
Seeds: xfs-v5 (CRCs, one-level bnobt), xfs-v5-deep (a two-level bnobt in AG 1), xfs-v4."""
import struct, sys

def crc32c(data, crc=0xFFFFFFFF):
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc

def put_crc(buf, at):
    buf[at:at + 4] = b"\0\0\0\0"
    struct.pack_into("<I", buf, at, crc32c(bytes(buf)) ^ 0xFFFFFFFF)

BS, AGB, DBLOCKS, LOG_AGBNO, LOG_BLOCKS = 512, 64, 120, 40, 16
UUID = bytes(range(1, 17))
NULL = 0xFFFFFFFF

def image(v5, deep):
    img = bytearray(DBLOCKS * BS)
    def block(ag, agbno): return (ag * AGB + agbno) * BS
    sb = bytearray(BS)
    struct.pack_into(">4sIQQQ", sb, 0, b"XFSB", BS, DBLOCKS, 0, 0)
    sb[32:48] = UUID
    struct.pack_into(">QQQQ", sb, 48, LOG_AGBNO, 128, 129, 130)
    struct.pack_into(">IIIIIHHHH", sb, 80, 1, AGB, 2, 0, LOG_BLOCKS, 0xB4A5 if v5 else 0xB4A4, 512, 512, 1)
    struct.pack_into(">BBBBBBBB", sb, 120, 9, 9, 9, 0, 6, 0, 0, 25)
    if v5:
        struct.pack_into(">IIII", sb, 208, 0, 0, 1, 0)  # incompat: ftype
        put_crc(sb, 224)
    # AG 0: log at 40..55; free 10..19 and 56..63; AGFL holds 6 and 7.
    # AG 1 (56 blocks): free 8..49, or, deep, 10..11 14..15 | 20..29 40..49 in two leaves.
    trees = {0: [[(10, 10), (56, 8)]], 1: [[(10, 2), (14, 2)], [(20, 10), (40, 10)]] if deep else [[(8, 42)]]}
    hdr = 56 if v5 else 16
    for ag in (0, 1):
        length = AGB if ag == 0 else DBLOCKS - AGB
        img[block(ag, 0):block(ag, 0) + BS] = sb
        leaves = trees[ag]
        leaf_blocks = [4] if len(leaves) == 1 else [5, 6]
        free = sum(c for leaf in leaves for _, c in leaf)
        def btree_block(agbno, level, n, left, right):
            b = bytearray(BS)
            struct.pack_into(">4sHHII", b, 0, b"AB3B" if v5 else b"ABTB", level, n, left, right)
            if v5:
                struct.pack_into(">QQ", b, 16, ag * AGB + agbno, 0)
                b[32:48] = UUID
                struct.pack_into(">I", b, 48, ag)
            return b
        for i, (agbno, recs) in enumerate(zip(leaf_blocks, leaves)):
            left = leaf_blocks[i - 1] if i > 0 else NULL
            right = leaf_blocks[i + 1] if i + 1 < len(leaf_blocks) else NULL
            b = btree_block(agbno, 0, len(recs), left, right)
            for k, (s, c) in enumerate(recs):
                struct.pack_into(">II", b, hdr + 8 * k, s, c)
            if v5: put_crc(b, 52)
            img[block(ag, agbno):block(ag, agbno) + BS] = b
        root, levels = 4, 1
        if len(leaves) > 1:
            levels = 2
            node_max = (BS - hdr) // 12
            b = btree_block(4, 1, len(leaves), NULL, NULL)
            for k, (recs, child) in enumerate(zip(leaves, leaf_blocks)):
                struct.pack_into(">II", b, hdr + 8 * k, recs[0][0], recs[0][1])
                struct.pack_into(">I", b, hdr + 8 * node_max + 4 * k, child)
            if v5: put_crc(b, 52)
            img[block(ag, 4):block(ag, 4) + BS] = b
        agf = bytearray(BS)
        struct.pack_into(">4s15I", agf, 0, b"XAGF", 1, ag, length, root, 7 if levels == 2 else 5, 0,
                         levels, 1, 0, 0, 1, 2, free, max(c for leaf in leaves for _, c in leaf), 0)
        agf[64:80] = UUID
        if v5: put_crc(agf, 216)
        img[block(ag, 1):block(ag, 1) + BS] = agf
        # The free list: two blocks the trees do not list (v4: no header, the array at 0).
        agfl = bytearray(b"\xff" * BS)
        entries = (6, 7) if ag == 0 else (50, 51)
        if v5:
            struct.pack_into(">4sI", agfl, 0, b"XAFL", ag)
            agfl[8:24] = UUID
            agfl[24:36] = b"\0" * 12
        struct.pack_into(">II", agfl, 36 if v5 else 0, *entries)
        if v5: put_crc(agfl, 32)
        img[block(ag, 3):block(ag, 3) + BS] = agfl
    # The log: an unmount record (header + one data block, cycle 1), then never-written blocks.
    log = block(0, LOG_AGBNO)
    h = bytearray(BS)
    struct.pack_into(">IIIIQQIIII", h, 0, 0xFEEDBABE, 1, 2, 512, 1 << 32, 1 << 32, 0, NULL, 1, 0xB0C0D0D0)
    struct.pack_into(">I", h, 300, 1)
    h[304:320] = UUID
    struct.pack_into(">I", h, 320, 32768)
    img[log:log + BS] = h
    struct.pack_into(">IIBB", img, log + BS, 1, 8, 0xAA, 0x20)
    return bytes(img)

out = sys.argv[1] if len(sys.argv) > 1 else "Fuzz/corpus/abm"
for name, v5, deep in (("xfs-v5", True, False), ("xfs-v5-deep", True, True), ("xfs-v4", False, False)):
    open(f"{out}/{name}", "wb").write(image(v5, deep))

import Foundation
import VZCore
import VZTestSupport
import XCTest

/// A disk image file read with pread, for the mapper under test.
final class FileDisk: BlockReader {
    let fd: Int32
    let capacity: UInt64
    let displayName: String
    /// Bytes replaced on reads (corruption tests), by disk offset.
    var patches: [UInt64: UInt8] = [:]

    init(_ path: String) throws {
        fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw NSError(domain: "FileDisk", code: Int(errno)) }
        capacity = UInt64(lseek(fd, 0, SEEK_END))
        displayName = path
    }
    deinit { close(fd) }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            guard n > 0 else { throw NSError(domain: "FileDisk", code: Int(errno)) }
            done += n
        }
        for (o, b) in patches where o >= offset && o < offset + UInt64(buffer.count) { buffer[Int(o - offset)] = b }
    }
}

/// Runs a tool to its end; fails the test (throws) unless it exits 0.
@discardableResult
func sh(_ command: String, allowFailure: Bool = false) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    var env = ProcessInfo.processInfo.environment
    env["MTOOLS_SKIP_CHECK"] = "1"
    env["PATH"] = (env["PATH"] ?? "") + ":/usr/sbin:/sbin"
    p.environment = env
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    if p.terminationStatus != 0 && !allowFailure {
        throw NSError(domain: "sh", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(command): \(text)"])
    }
    return text
}

final class Scratch {
    let dir: String
    init(_ name: String = #function) throws {
        dir = NSTemporaryDirectory() + "vzrepl-abm-\(name.filter { $0.isLetter || $0.isNumber })-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { dir + "/" + name }
    func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }

    /// Files for a filesystem: random "keep" files and a victim made of a recognisable pattern.
    func populate(seed: UInt64 = 1) throws {
        var rng = SplitMix64(seed: seed)
        for (i, size) in [300_000, 70_000, 5_000].enumerated() {
            var bytes = [UInt8](repeating: 0, count: size)
            for k in 0..<size { bytes[k] = UInt8(truncatingIfNeeded: rng.next()) }
            try Data(bytes).write(to: URL(fileURLWithPath: path("src/keep\(i).bin")))
        }
        try Data(victimData(200_000)).write(to: URL(fileURLWithPath: path("src/victim.bin")))
    }
}

let victimPattern = Array("DELETED-VICTIM-PATTERN-0123456789abcdef-".utf8)
func victimData(_ n: Int) -> [UInt8] { (0..<n).map { victimPattern[$0 % victimPattern.count] } }

/// The offsets (multiples of `unit`) of every `unit`-sized chunk of the image that holds the
/// victim pattern.
func victimChunks(_ path: String, unit: Int = 4096) throws -> [UInt64] {
    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let needle = Array(victimPattern.prefix(16))
    var out: [UInt64] = []
    data.withUnsafeBytes { buf in
        needle.withUnsafeBytes { n in
            var off = 0
            while off < buf.count {
                let end = Swift.min(off + unit + needle.count - 1, buf.count)
                var p = off
                while p + n.count <= end {
                    guard let hit = memchr(buf.baseAddress! + p, Int32(needle[0]), end - n.count + 1 - p) else { break }
                    let at = buf.baseAddress!.distance(to: UnsafeRawPointer(hit))
                    if memcmp(buf.baseAddress! + at, n.baseAddress!, n.count) == 0 { out.append(UInt64(off)); break }
                    p = at + 1
                }
                off += unit
            }
        }
    }
    return out
}

/// Free block ranges of an ext filesystem as `dumpe2fs` reports them (bytes, volume-relative).
func dumpe2fsFree(_ image: String, offset: UInt64) throws -> (free: ExtentSet, blockSize: UInt64) {
    let text = try sh("dumpe2fs '\(image)?offset=\(offset)' 2>/dev/null")
    var bs: UInt64 = 0
    var free = ExtentSet()
    for line in text.split(separator: "\n") {
        if line.hasPrefix("Block size:") { bs = UInt64(line.split(separator: " ").last!)! }
        guard line.hasPrefix("  Free blocks: ") else { continue }
        for r in line.dropFirst("  Free blocks: ".count).split(separator: ",") {
            let parts = r.trimmingCharacters(in: .whitespaces).split(separator: "-").map { UInt64($0)! }
            let lo = parts[0], hi = parts.count > 1 ? parts[1] : parts[0]
            free.insert(Extent(offset: lo * bs, length: (hi - lo + 1) * bs))
        }
    }
    return (free, bs)
}

/// Used ranges of a partition image per `partclone.<fs> -D` (ddrescue domain log, '+' = used).
func partcloneUsed(_ tool: String, partition: String) throws -> ExtentSet {
    let log = partition + ".dom"
    try? FileManager.default.removeItem(atPath: log)
    try sh("set -o pipefail; \(tool) -D -s '\(partition)' -o '\(log)' 2>&1 | tail -3")
    var used = ExtentSet()
    for line in try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        guard f.count == 3, f[2] == "+" else { continue }
        used.insert(Extent(offset: UInt64(f[0].dropFirst(2), radix: 16)!, length: UInt64(f[1].dropFirst(2), radix: 16)!))
    }
    return used
}

extension ExtentSet {
    /// The set moved by `delta` bytes.
    func shifted(by delta: UInt64) -> ExtentSet { ExtentSet(map { Extent(offset: $0.offset + delta, length: $0.length) }) }
}

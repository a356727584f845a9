import Foundation

/// VMDK fixtures made at test time with the real qemu-img / qemu-io (Debian qemu-utils), and
/// the oracle every reader is held to: `qemu-img convert -O raw` of the same image or chain.
public enum QemuFixtures {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `argv` to its end; a non-zero exit throws with its stderr.
    @discardableResult
    public static func run(_ argv: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw Failure(description: "\(argv.joined(separator: " ")): exit \(p.terminationStatus): \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }

    public static let qemuImg = "/usr/bin/qemu-img"
    public static let qemuIO = "/usr/bin/qemu-io"

    /// A write of `length` bytes of `pattern` at `offset`, or zeros with `zero` (qemu-io write -z).
    public struct Write {
        public var offset: UInt64, length: UInt64, pattern: UInt8, zero: Bool
        public init(_ pattern: UInt8, at offset: UInt64, _ length: UInt64, zero: Bool = false) {
            self.offset = offset; self.length = length; self.pattern = pattern; self.zero = zero
        }
    }

    public static func write(_ image: String, _ writes: [Write]) throws {
        guard !writes.isEmpty else { return }
        var argv = [qemuIO, "-f", "vmdk"]
        for w in writes {
            argv += ["-c", w.zero ? "write -z \(w.offset) \(w.length)" : "write -P 0x\(String(w.pattern, radix: 16)) \(w.offset) \(w.length)"]
        }
        try run(argv + [image])
    }

    /// `qemu-img create -f vmdk -o subformat=S [options] path size`, then the writes.
    public static func create(_ path: String, subformat: String, size: UInt64, options: [String] = [],
                              backing: String? = nil, writes: [Write] = []) throws {
        var o = ["subformat=\(subformat)"] + options
        var argv = [qemuImg, "create", "-q", "-f", "vmdk"]
        if let b = backing { argv += ["-b", b, "-F", "vmdk"] } else { o += [] }
        argv += ["-o", o.joined(separator: ","), path, "\(size)"]
        try run(argv)
        try write(path, writes)
    }

    /// A raw image with the writes, then `qemu-img convert -O vmdk -o subformat=S` of it (the
    /// only way qemu makes streamOptimized).
    public static func convert(raw: String, to path: String, subformat: String) throws {
        try run([qemuImg, "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=\(subformat)", raw, path])
    }

    public static func makeRaw(_ path: String, size: UInt64, writes: [Write]) throws {
        FileManager.default.createFile(atPath: path, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.truncate(atOffset: size)
        for w in writes {
            try h.seek(toOffset: w.offset)
            try h.write(contentsOf: Data(repeating: w.zero ? 0 : w.pattern, count: Int(w.length)))
        }
        try h.close()
    }

    /// The oracle: `qemu-img convert -O raw` of the image (its whole chain) into `raw`.
    public static func oracle(_ image: String, into raw: String) throws {
        try run([qemuImg, "convert", "-q", "-O", "raw", image, raw])
    }

    /// Writes that exercise grain boundaries and a 64 KiB grain: whole grains, pieces of grains,
    /// a run across a grain table's 32 MiB coverage.
    public static func scatteredWrites(_ size: UInt64, pattern: UInt8) -> [Write] {
        let mib: UInt64 = 1 << 20
        var w = [Write(pattern, at: 0, 64 * 1024), Write(pattern &+ 1, at: mib + 512, 3 * 4096),
                 Write(pattern &+ 2, at: 3 * mib - 4096, 8192)]
        if size > 34 * mib { w.append(Write(pattern &+ 3, at: 32 * mib - 65536, 3 * 65536)) }
        w.append(Write(pattern &+ 4, at: size - 4096, 4096))
        return w
    }

    /// A three-link backing chain in `dir`: base.vmdk (`baseSubformat`) <- mid.vmdk <- leaf.vmdk,
    /// overlapping writes in each, and a zero write in the leaf over data of the base. Returns
    /// the leaf.
    public static func chain(in dir: String, size: UInt64, baseSubformat: String = "monolithicSparse",
                             leafSubformat: String = "monolithicSparse") throws -> String {
        let mib: UInt64 = 1 << 20
        try create(dir + "/base.vmdk", subformat: baseSubformat, size: size,
                   writes: [Write(0x11, at: 0, 4 * mib), Write(0x12, at: size - 2 * mib, 2 * mib)])
        try create(dir + "/mid.vmdk", subformat: "monolithicSparse", size: size, backing: "base.vmdk",
                   writes: [Write(0x21, at: mib, mib), Write(0x22, at: 5 * mib + 100 * 512, 4096)])
        try create(dir + "/leaf.vmdk", subformat: leafSubformat, size: size, backing: "mid.vmdk",
                   writes: [Write(0x31, at: mib + 65536, 65536), Write(0, at: 2 * mib, 65536, zero: true),
                            Write(0x33, at: 6 * mib, 512)])
        return dir + "/leaf.vmdk"
    }
}

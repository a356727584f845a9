import Foundation

/// A replication job as the controlling server writes it (Docs/job-file.md). A plain value: the
/// executable builds the transport and readers from it.
public struct JobConfig: Codable, Equatable, Sendable {
    public var job: String
    public var mode: ReplicationMode
    public var blockSize: UInt32
    public var whitespace: Bool
    public var target: TargetConfig
    public var disks: [DiskConfig]

    public struct DiskConfig: Codable, Equatable, Sendable {
        public var name: String
        public var source: String
        /// Expected capacity in bytes, when the controller recorded it at configuration time; a
        /// different size means the VM's hardware changed and the pass fails before sending.
        public var capacityBytes: UInt64?

        private enum CodingKeys: String, CodingKey { case name, source, capacityBytes }

        public init(name: String, source: String, capacityBytes: UInt64? = nil) {
            self.name = name; self.source = source; self.capacityBytes = capacityBytes
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            source = try c.decode(String.self, forKey: .source)
            capacityBytes = try c.decodeWholeNumber(UInt64.self, forKey: .capacityBytes)
        }
    }

    public struct TargetConfig: Codable, Equatable, Sendable {
        public enum Transport: String, Codable, Sendable, CaseIterable {
            case exec, ssh
            public init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                let name = try c.decode(String.self)
                guard let t = Transport(rawValue: name) else {
                    throw DecodingError.dataCorruptedError(in: c, debugDescription:
                        "'\(name)' is not a transport (\(Transport.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                self = t
            }
        }
        public var transport: Transport
        /// exec: the command to spawn; ssh: the command asked of the server (the forced command wins).
        public var command: [String]?
        public var host: String?
        public var port: Int?
        public var user: String?
        public var identity: String?
        public var hostKeySHA256: String?
        public var knownHosts: String?
        /// A pass fails when nothing arrives from the target for this long.
        public var idleTimeoutSeconds: Double?
        /// A pass fails when the target sends nothing but keepalives for this long (alive, but
        /// stuck); default 300 (Docs/protocol.md §4).
        public var progressTimeoutSeconds: Double?
        public var connectTimeoutSeconds: Double?
    }

    public static let defaultBlockSize: UInt32 = 1 << 20
    public static let minBlockSize: UInt32 = 64 << 10
    public static let maxBlockSize: UInt32 = 8 << 20

    private enum CodingKeys: String, CodingKey { case job, mode, blockSize, whitespace, target, disks }

    public init(job: String, mode: ReplicationMode = .differential, blockSize: UInt32 = JobConfig.defaultBlockSize,
                whitespace: Bool = true, target: TargetConfig, disks: [DiskConfig]) {
        self.job = job; self.mode = mode; self.blockSize = blockSize; self.whitespace = whitespace
        self.target = target; self.disks = disks
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        job = try c.decode(String.self, forKey: .job)
        let modeName = try c.decodeIfPresent(String.self, forKey: .mode) ?? ReplicationMode.differential.rawValue
        guard let m = ReplicationMode(rawValue: modeName) else {
            throw DecodingError.dataCorruptedError(forKey: .mode, in: c, debugDescription:
                "'\(modeName)' is not a supported mode (\(ReplicationMode.allCases.map(\.rawValue).joined(separator: ", ")); CBT comes in a later release")
        }
        mode = m
        blockSize = try c.decodeWholeNumber(UInt32.self, forKey: .blockSize) ?? JobConfig.defaultBlockSize
        whitespace = try c.decodeIfPresent(Bool.self, forKey: .whitespace) ?? true
        target = try c.decode(TargetConfig.self, forKey: .target)
        disks = try c.decode([DiskConfig].self, forKey: .disks)
    }

    /// Parses and validates a job file's bytes; every error names `fileName`, the field and why.
    public static func parse(_ data: [UInt8], fileName: String) throws -> JobConfig {
        let config: JobConfig
        do {
            config = try JSONDecoder().decode(JobConfig.self, from: Data(data))
        } catch let e as DecodingError {
            throw VZError(.badJobFile, "\(fileName): \(describe(e))")
        } catch {
            throw VZError(.badJobFile, "\(fileName): not valid JSON: \(error)")
        }
        try config.validate(fileName: fileName)
        return config
    }

    public func validate(fileName: String) throws {
        func bad(_ field: String, _ why: String) -> VZError { VZError(.badJobFile, "\(fileName): field '\(field)': \(why)") }
        if let why = NameRules.problem(with: job) { throw bad("job", why) }
        guard blockSize >= JobConfig.minBlockSize, blockSize <= JobConfig.maxBlockSize, blockSize & (blockSize - 1) == 0 else {
            throw bad("blockSize", "\(blockSize) is not a power of two from 65536 (64 KiB) to 8388608 (8 MiB)")
        }
        guard !disks.isEmpty else { throw bad("disks", "the job has no disks") }
        var seen = Set<String>()
        for (i, d) in disks.enumerated() {
            if let why = NameRules.problem(with: d.name) { throw bad("disks[\(i)].name", why) }
            guard seen.insert(d.name).inserted else { throw bad("disks[\(i)].name", "'\(d.name)' appears twice") }
            guard !d.source.isEmpty else { throw bad("disks[\(i)].source", "is empty") }
        }
        switch target.transport {
        case .exec:
            guard let cmd = target.command, !cmd.isEmpty, !cmd[0].isEmpty else {
                throw bad("target.command", "the exec transport needs a command, e.g. [\"vzrepl-target\", \"serve\", \"--stdio\", \"--root\", \"/srv/replicas\"]")
            }
        case .ssh:
            guard let host = target.host, !host.isEmpty else { throw bad("target.host", "the ssh transport needs a host") }
            if let p = target.port, !(1...65535).contains(p) { throw bad("target.port", "\(p) is not a TCP port") }
            guard let u = target.user, !u.isEmpty else { throw bad("target.user", "the ssh transport needs a user") }
            guard let id = target.identity, !id.isEmpty else { throw bad("target.identity", "the ssh transport needs a private key file") }
            if target.hostKeySHA256 == nil && target.knownHosts == nil {
                throw bad("target.hostKeySHA256", "no host key pin: give hostKeySHA256 (\"SHA256:...\" as ssh-keygen -lf prints it) or knownHosts; vzrepl never trusts a host on first use")
            }
            if let fp = target.hostKeySHA256, !fp.hasPrefix("SHA256:") || fp.count < 20 {
                throw bad("target.hostKeySHA256", "'\(fp)' is not an OpenSSH SHA-256 fingerprint (SHA256:<base64>)")
            }
        }
        if let t = target.idleTimeoutSeconds, !(t > 0 && t <= 86400) { throw bad("target.idleTimeoutSeconds", "\(t) is not between 0 and 86400") }
        if let t = target.progressTimeoutSeconds, !(t > 0 && t <= 86400) { throw bad("target.progressTimeoutSeconds", "\(t) is not between 0 and 86400") }
        if let t = target.connectTimeoutSeconds, !(t > 0 && t <= 3600) { throw bad("target.connectTimeoutSeconds", "\(t) is not between 0 and 3600") }
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ p: [CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
        }
        switch e {
        case let .keyNotFound(key, ctx):
            let parent = path(ctx.codingPath)
            return "field '\(parent.isEmpty ? key.stringValue : parent + "." + key.stringValue)': is required"
        case let .typeMismatch(type, ctx):
            return "field '\(path(ctx.codingPath))': expected \(typeName(type))"
        case let .valueNotFound(type, ctx):
            return "field '\(path(ctx.codingPath))': expected \(typeName(type)), got null"
        case let .dataCorrupted(ctx):
            if ctx.codingPath.isEmpty { return "not valid JSON (\(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription))" }
            return "field '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        @unknown default:
            return "\(e)"
        }
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is UInt32.Type, is UInt64.Type, is Int.Type: return "a non-negative whole number"
        case is Double.Type: return "a number"
        default: return "\(t)"
        }
    }
}

/// Job and disk names become directory and file names on the target: a strict alphabet keeps
/// every name from the wire inside the datastore root.
public enum NameRules {
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 64 { return "'\(name)' is longer than 64 bytes" }
        if name == "." || name == ".." || name.contains("..") { return "'\(name)' contains '..'" }
        if name.contains("/") { return "'\(name)' contains '/'" }
        if name.hasPrefix(".") || name.hasPrefix("-") { return "'\(name)' starts with '\(name.first!)'" }
        for u in name.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "-" || u == "_" || u == "."
            if !ok { return "'\(name)' has the character '\(u)' (allowed: letters, digits, '-', '_', '.')" }
        }
        return nil
    }
}

extension KeyedDecodingContainer {
    /// A whole number that fits `T`. Decoded through Double because Foundation's JSONDecoder
    /// reports a negative, fractional or too large integer without naming the field.
    func decodeWholeNumber<T: FixedWidthInteger>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let d = try decodeIfPresent(Double.self, forKey: key) else { return nil }
        guard d == d.rounded(), d >= Double(T.min), d <= Double(T.max), let v = T(exactly: d) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self,
                debugDescription: "\(d) is not a whole number from \(T.min) to \(T.max)")
        }
        return v
    }
}

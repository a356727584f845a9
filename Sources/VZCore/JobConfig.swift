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
    /// Active Block Mapping: read, hash and send only the blocks the guest's partitions and
    /// filesystems use (Docs/job-file.md). Off unless the job asks for it.
    public var abm: Bool
    /// Where the source keeps a pass's working files (the active-block filter); nil means
    /// `JobConfig.defaultWorkDir(job:)`.
    public var workDir: String?
    /// ABM on an ext4 that needs recovery (a crash-consistent snapshot of a running Linux VM):
    /// read its journal and keep active only the groups whose bitmaps it holds, instead of the
    /// whole volume. Off unless the job asks for it.
    public var abmJournalOverlay: Bool
    /// ESXi datastore names (or UUIDs) mapped to the folders where this VA mounts them: a VMDK
    /// chain link outside the disk's folder (a linked clone's base) is read only inside one of
    /// these, and `/vmfs/volumes/<name>/…` paths are read from the mount (Docs/job-file.md).
    public var datastores: [String: String]
    /// Bytes per second the source may write to the wire, for the whole job (parallel disks share
    /// it); nil: no limit. At least `minBandwidthLimit`.
    public var bandwidthLimit: UInt64?
    /// How many disks of the job replicate at once, each in its own session (default 1).
    public var parallelDisks: Int

    /// Below this a block frame could not arrive within the target's frame timeout.
    public static let minBandwidthLimit: UInt64 = 65536
    public static let maxParallelDisks = 16

    /// The working directory a job uses when its file names none.
    public static func defaultWorkDir(job: String) -> String { "/var/lib/vzrepl/work/\(job)/" }
    public var effectiveWorkDir: String { workDir ?? JobConfig.defaultWorkDir(job: job) }

    public struct DiskConfig: Codable, Equatable, Sendable {
        public var name: String
        public var source: String
        /// Expected capacity in bytes, when the controller recorded it at configuration time; a
        /// different size means the VM's hardware changed and the pass fails before sending.
        public var capacityBytes: UInt64?
        /// How to read `source`; nil: sniff it (a VMDK is read as a VMDK, a raw image or block
        /// device as raw, other containers are refused).
        public var format: DiskFormat?
        /// With a `.vmx` as `source`: the device node (`scsi0:0`) whose disk to read.
        public var node: String?

        /// The fields a disk may have; any other is refused (one case per field).
        private enum CodingKeys: String, CodingKey, CaseIterable { case name, source, capacityBytes, format, node }

        public init(name: String, source: String, capacityBytes: UInt64? = nil, format: DiskFormat? = nil, node: String? = nil) {
            self.name = name; self.source = source; self.capacityBytes = capacityBytes; self.format = format; self.node = node
        }

        /// A VM's device node: `scsi0:0`, `sata0:1`, `ide1:0`, `nvme0:0`.
        public static func isNode(_ s: String) -> Bool {
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let unit = Int(parts[1]), unit >= 0, unit < 256 else { return false }
            for bus in ["scsi", "sata", "ide", "nvme"] where parts[0].hasPrefix(bus) {
                if let n = Int(parts[0].dropFirst(bus.count)), n >= 0, n < 16 { return true }
            }
            return false
        }

        public init(from decoder: Decoder) throws {
            try decoder.refuseUnknownFields(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            source = try c.decode(String.self, forKey: .source)
            capacityBytes = try c.decodeWholeNumber(UInt64.self, forKey: .capacityBytes)
            if let f = try c.decodeIfPresent(String.self, forKey: .format) {
                guard let known = DiskFormat(rawValue: f) else {
                    throw DecodingError.dataCorruptedError(forKey: .format, in: c, debugDescription:
                        "'\(f)' is not a disk format (\(DiskFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                format = known
            }
            node = try c.decodeIfPresent(String.self, forKey: .node)
        }
    }

    /// A disk's `format`: `raw` reads the source's bytes as they are, whatever they look like
    /// (a disk that happens to start with a qcow2 magic); `vmdk` requires a VMDK.
    public enum DiskFormat: String, Codable, Equatable, Sendable, CaseIterable { case raw, vmdk }

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

        /// The fields `target` may have; any other is refused (one case per field).
        private enum CodingKeys: String, CodingKey, CaseIterable {
            case transport, command, host, port, user, identity, hostKeySHA256, knownHosts
            case idleTimeoutSeconds, progressTimeoutSeconds, connectTimeoutSeconds
        }

        public init(transport: Transport, command: [String]? = nil, host: String? = nil, port: Int? = nil,
                    user: String? = nil, identity: String? = nil, hostKeySHA256: String? = nil, knownHosts: String? = nil,
                    idleTimeoutSeconds: Double? = nil, progressTimeoutSeconds: Double? = nil, connectTimeoutSeconds: Double? = nil) {
            self.transport = transport; self.command = command; self.host = host; self.port = port; self.user = user
            self.identity = identity; self.hostKeySHA256 = hostKeySHA256; self.knownHosts = knownHosts
            self.idleTimeoutSeconds = idleTimeoutSeconds; self.progressTimeoutSeconds = progressTimeoutSeconds
            self.connectTimeoutSeconds = connectTimeoutSeconds
        }

        public init(from decoder: Decoder) throws {
            try decoder.refuseUnknownFields(CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            transport = try c.decode(Transport.self, forKey: .transport)
            command = try c.decodeIfPresent([String].self, forKey: .command)
            host = try c.decodeIfPresent(String.self, forKey: .host)
            port = try c.decodeWholeNumber(UInt16.self, forKey: .port).map(Int.init)
            user = try c.decodeIfPresent(String.self, forKey: .user)
            identity = try c.decodeIfPresent(String.self, forKey: .identity)
            hostKeySHA256 = try c.decodeIfPresent(String.self, forKey: .hostKeySHA256)
            knownHosts = try c.decodeIfPresent(String.self, forKey: .knownHosts)
            idleTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds)
            progressTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .progressTimeoutSeconds)
            connectTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .connectTimeoutSeconds)
        }
    }

    public static let defaultBlockSize = BlockSize.defaultBytes
    public static let minBlockSize = BlockSize.minBytes
    public static let maxBlockSize = BlockSize.maxBytes

    /// Timeouts shorter than this cannot be met by any real link (and 1e-300 is a typo).
    public static let minTimeoutSeconds = 1.0
    public static let maxIdleTimeoutSeconds = 86400.0
    public static let maxConnectTimeoutSeconds = 3600.0
    /// Disk sizes are whole sectors.
    public static let sectorSize: UInt64 = 512

    /// The top-level fields of a job file; any other is refused (one case per field).
    private enum CodingKeys: String, CodingKey, CaseIterable {
        case job, mode, blockSize, whitespace, target, disks, abm, workDir, abmJournalOverlay
        case datastores, bandwidthLimit, parallelDisks
    }

    public init(job: String, mode: ReplicationMode = .differential, blockSize: UInt32 = JobConfig.defaultBlockSize,
                whitespace: Bool = true, target: TargetConfig, disks: [DiskConfig], abm: Bool = false, workDir: String? = nil,
                abmJournalOverlay: Bool = false, datastores: [String: String] = [:], bandwidthLimit: UInt64? = nil,
                parallelDisks: Int = 1) {
        self.job = job; self.mode = mode; self.blockSize = blockSize; self.whitespace = whitespace
        self.target = target; self.disks = disks; self.abm = abm; self.workDir = workDir
        self.abmJournalOverlay = abmJournalOverlay; self.datastores = datastores
        self.bandwidthLimit = bandwidthLimit; self.parallelDisks = parallelDisks
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownFields(CodingKeys.self)
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
        abm = try c.decodeIfPresent(Bool.self, forKey: .abm) ?? false
        workDir = try c.decodeIfPresent(String.self, forKey: .workDir)
        abmJournalOverlay = try c.decodeIfPresent(Bool.self, forKey: .abmJournalOverlay) ?? false
        datastores = try c.decodeIfPresent([String: String].self, forKey: .datastores) ?? [:]
        bandwidthLimit = try c.decodeWholeNumber(UInt64.self, forKey: .bandwidthLimit)
        parallelDisks = try c.decodeWholeNumber(Int.self, forKey: .parallelDisks) ?? 1
    }

    /// Parses and validates a job file's bytes; every error is `.badJobFile` and names
    /// `fileName`, the field and why.
    public static func parse(_ data: [UInt8], fileName: String) throws -> JobConfig {
        do {
            return try decode(data, fileName: fileName)
        } catch let e as JobFileError {
            throw e.vzError
        }
    }

    /// As `parse`, but throws a `JobFileError` that keeps the field apart (`check-job --json`).
    public static func decode(_ data: [UInt8], fileName: String) throws -> JobConfig {
        let config: JobConfig
        do {
            config = try JSONDecoder().decode(JobConfig.self, from: Data(data))
        } catch let e as DecodingError {
            throw JobFileError(decoding: e, fileName: fileName)
        } catch {
            throw JobFileError(fileName: fileName, field: nil, reason: "not valid JSON: \(error)")
        }
        if let (field, why) = config.problem() { throw JobFileError(fileName: fileName, field: field, reason: why) }
        return config
    }

    /// The job name a job file holds, when it holds a valid one, even if the file is otherwise
    /// invalid: it labels the events of a pass that failed on its job file.
    public static func jobName(in data: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
              let name = object[CodingKeys.job.stringValue] as? String, NameRules.problem(with: name) == nil else { return nil }
        return name
    }

    public func validate(fileName: String) throws {
        if let (field, why) = problem() { throw JobFileError(fileName: fileName, field: field, reason: why).vzError }
    }

    /// Why `name` → `path` cannot be an entry of `datastores`, or nil.
    static func datastoreProblem(name: String, path: String) -> String? {
        if name.isEmpty || name.utf8.count > 255 { return "a datastore name is 1 to 255 bytes" }
        if name == "." || name == ".." || name.contains("/") || name.utf8.contains(0) {
            return "the datastore name '\(name)' may not be '.' or '..' nor contain '/' or NUL"
        }
        guard path.hasPrefix("/") else { return "'\(path)' is not an absolute path (the folder where this VA mounts the datastore)" }
        let parts = path.split(separator: "/")
        if parts.isEmpty { return "'\(path)' is the root directory: map the datastore's own mount point" }
        if parts.contains(where: { $0 == ".." || $0 == "." }) || path.utf8.contains(0) || path.utf8.count > 1024 {
            return "'\(path)' may not contain '.' or '..' components or NUL, and is at most 1024 bytes"
        }
        return nil
    }

    /// The first field that breaks a rule and why, or nil for a valid job.
    private func problem() -> (field: String, reason: String)? {
        if let why = NameRules.problem(with: job) { return ("job", why) }
        if let why = BlockSize.problem(with: blockSize) { return ("blockSize", why) }
        guard !disks.isEmpty else { return ("disks", "the job has no disks") }
        if let limit = bandwidthLimit {
            guard limit >= JobConfig.minBandwidthLimit else {
                return ("bandwidthLimit", "\(limit) bytes per second is below the minimum of \(JobConfig.minBandwidthLimit) (64 KiB/s)")
            }
            // A block frame must arrive well within the target's frame timeout (120 s by default).
            guard limit >= (UInt64(blockSize) + 59) / 60 else {
                return ("bandwidthLimit", "\(limit) bytes per second cannot carry one \(blockSize)-byte block within 60 s (half the target's default frame timeout): raise it to at least \((UInt64(blockSize) + 59) / 60) or use a smaller blockSize")
            }
        }
        guard (1...JobConfig.maxParallelDisks).contains(parallelDisks) else {
            return ("parallelDisks", "\(parallelDisks) is not from 1 to \(JobConfig.maxParallelDisks)")
        }
        if let w = workDir {
            guard w.hasPrefix("/") else { return ("workDir", "'\(w)' is not an absolute path") }
            guard !w.split(separator: "/").contains(".."), !w.utf8.contains(0), w.utf8.count <= 1024 else {
                return ("workDir", "'\(w)' may not contain '..' or NUL and is at most 1024 bytes")
            }
        }
        for (name, path) in datastores.sorted(by: { $0.key < $1.key }) {
            if let why = JobConfig.datastoreProblem(name: name, path: path) { return ("datastores.\(name)", why) }
        }
        var seen = Set<String>()
        for (i, d) in disks.enumerated() {
            if let why = NameRules.problem(withDisk: d.name) { return ("disks[\(i)].name", why) }
            guard seen.insert(d.name).inserted else { return ("disks[\(i)].name", "'\(d.name)' appears twice") }
            guard !d.source.isEmpty else { return ("disks[\(i)].source", "is empty") }
            let isVMX = d.source.lowercased().hasSuffix(".vmx")
            if let n = d.node {
                guard DiskConfig.isNode(n) else { return ("disks[\(i)].node", "'\(n)' is not a device node such as scsi0:0, sata0:1, ide0:0, nvme0:0") }
                guard isVMX else { return ("disks[\(i)].node", "a node names a disk of a VM: source must then be the VM's .vmx") }
                if d.format == .raw { return ("disks[\(i)].format", "a .vmx disk is a VMDK, not raw") }
            } else if isVMX {
                return ("disks[\(i)].node", "source is a .vmx: say which disk of the VM with \"node\", e.g. \"scsi0:0\"")
            }
            if let c = d.capacityBytes, c == 0 || c % JobConfig.sectorSize != 0 {
                return ("disks[\(i)].capacityBytes", "\(c) is not a disk size: a disk holds a whole number of \(JobConfig.sectorSize)-byte sectors, at least one")
            }
        }
        switch target.transport {
        case .exec:
            guard let cmd = target.command, !cmd.isEmpty, !cmd[0].isEmpty else {
                return ("target.command", "the exec transport needs a command, e.g. [\"vzrepl-target\", \"serve\", \"--stdio\", \"--root\", \"/srv/replicas\"]")
            }
        case .ssh:
            guard let host = target.host, !host.isEmpty else { return ("target.host", "the ssh transport needs a host") }
            if let p = target.port, !(1...65535).contains(p) { return ("target.port", "\(p) is not a TCP port") }
            guard let u = target.user, !u.isEmpty else { return ("target.user", "the ssh transport needs a user") }
            guard let id = target.identity, !id.isEmpty else { return ("target.identity", "the ssh transport needs a private key file") }
            if target.hostKeySHA256 == nil && target.knownHosts == nil {
                return ("target.hostKeySHA256", "no host key pin: give hostKeySHA256 (\"SHA256:...\" as ssh-keygen -lf prints it) or knownHosts; vzrepl never trusts a host on first use")
            }
            if let fp = target.hostKeySHA256, !fp.hasPrefix("SHA256:") || fp.count < 20 {
                return ("target.hostKeySHA256", "'\(fp)' is not an OpenSSH SHA-256 fingerprint (SHA256:<base64>)")
            }
        }
        let timeouts = [("idleTimeoutSeconds", target.idleTimeoutSeconds, JobConfig.maxIdleTimeoutSeconds),
                        ("progressTimeoutSeconds", target.progressTimeoutSeconds, JobConfig.maxIdleTimeoutSeconds),
                        ("connectTimeoutSeconds", target.connectTimeoutSeconds, JobConfig.maxConnectTimeoutSeconds)]
        for case let (name, t?, max) in timeouts where !(t >= JobConfig.minTimeoutSeconds && t <= max) {
            return ("target.\(name)", "\(t) is not between \(Int(JobConfig.minTimeoutSeconds)) and \(Int(max)) seconds")
        }
        return nil
    }
}

import ArgumentParser
import Foundation
import Glibc
import Logging
import VZCore
import VZPlatform
import VZTarget
import VZTransportLocal

@main
struct TargetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vzrepl-target",
        abstract: "The target agent of vzrepl: owns the replicas under a datastore root.",
        discussion: """
        In production sshd starts `vzrepl-target serve --stdio --root DIR` as the forced command \
        of the replication key (Appliance/authorized_keys.template). Logs (one logfmt line per event, \
        with job, disk and the source's pass id) go to stderr and to the log file (--log-dir); stdout \
        of `serve` carries the protocol and nothing else. `diagnose` writes a support bundle.

        Layout under the root: JOB/DISK.vmdk (descriptor), JOB/DISK-flat.vmdk (data), \
        JOB/DISK.vzmap (block hashes), JOB/DISK.vzcid (CID record), JOB/vzdisks (the job's disk \
        set), JOB/DISK.vzundo and JOB/vzundo-script during a pass. \
        See Docs/operations.md.

        --job is a job NAME here (the folder ROOT/JOB, the "job" field of the job file); \
        vzrepl-source's --job is a job FILE.
        """,
        version: VZVersion.banner(agent: TargetServer.agentName),
        subcommands: [Serve.self, Status.self, Verify.self, Recover.self, Rollback.self, Resize.self, AddDisk.self, RemoveDisk.self, Diagnose.self])
}

struct RootOptions: ParsableArguments {
    @Option(help: "The datastore root that holds the replicas.")
    var root: String
}

struct LogOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of the log file vzrepl-target.log (logfmt lines, appended). Default: $VZREPL_LOG_DIR, else /var/log/vzrepl; when the file cannot be opened there, logs go to stderr only (and the first line says so).",
                               valueName: "dir"))
    var logDir: String?

    @Option(help: "Log file (appended), instead of vzrepl-target.log in --log-dir.")
    var logFile: String?

    @Option(help: "Rotate the log file to FILE.1 before it grows past this many MiB (0: never; logrotate then).")
    var logMaxMib: UInt64 = LogSink.defaultMaxBytes >> 20

    @Option(help: "Log level: \(LineLogHandler.levelNames.joined(separator: ", ")).")
    var logLevel: String = "info"

    @Flag(help: "Log at debug level (more detail per disk and step).")
    var verbose = false

    @Flag(help: "Log at trace level, with a summary of the protocol frames sent and received.")
    var debug = false

    func validate() throws {
        guard LineLogHandler.levelNames.contains(logLevel) else {
            throw ValidationError("--log-level '\(logLevel)' is not a log level (allowed: \(LineLogHandler.levelNames.joined(separator: ", ")))")
        }
        guard logMaxMib <= 1 << 20 else { throw ValidationError("--log-max-mib \(logMaxMib) is more than 1 TiB") }
    }

    /// The most verbose of --log-level, --verbose (debug) and --debug (trace).
    var level: Logger.Level {
        var l = Logger.Level(rawValue: logLevel) ?? .info
        if verbose { l = min(l, .debug) }
        if debug { l = min(l, .trace) }
        return l
    }

    var filePath: String { LineLogHandler.logFilePath(agent: "vzrepl-target", file: logFile, directory: logDir) }

    func bootstrap() { LineLogHandler.bootstrap(filePath: filePath, level: level, maxFileBytes: logMaxMib << 20) }
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve one replication session on stdin/stdout.")

    @Flag(help: "Speak the protocol on stdin/stdout (the only mode; sshd runs it this way).")
    var stdio = false

    @OptionGroup var root: RootOptions

    @Option(help: "Give up when the source sends nothing for this many seconds.")
    var idleTimeout: Double = 60

    @Option(help: "Give up when a frame from the source is not complete this many seconds after its first byte.")
    var frameTimeout: Double = 120

    @Option(help: "Give up when the source sends nothing but keepalives for this many seconds (alive but stuck).")
    var progressTimeout: Double = 300

    @Option(help: "Wait this many seconds for another session's lock on a disk before refusing.")
    var lockWait: Double = 5

    @Option(help: "The most memory one disk's block map may take, in bytes (33 bytes a block); a disk whose map needs more is refused before anything is created.")
    var mapMemoryLimit: UInt64 = TargetServer.Options.defaultMapMemoryLimit

    @OptionGroup var log: LogOptions

    func run() throws {
        guard stdio else { throw ValidationError("serve needs --stdio") }
        for (name, value) in [("--idle-timeout", idleTimeout), ("--frame-timeout", frameTimeout), ("--progress-timeout", progressTimeout)]
        where !(value > 0 && value <= 86400) {
            throw ValidationError("\(name) \(value) is not between 0 and 86400 seconds")
        }
        log.bootstrap()
        MemoryTuning.apply()
        var logger = Logger(label: "vzrepl.target")
        if let original = ProcessInfo.processInfo.environment["SSH_ORIGINAL_COMMAND"] {
            logger.notice("the client asked to run '\(original)'; running the agent instead (forced command)")
        }
        logger[metadataKey: "pid"] = "\(getpid())"
        // Test-only: the benchmark's unjournaled reference run.
        let journaled = ProcessInfo.processInfo.environment["VZREPL_UNSAFE_NO_JOURNAL"] != "1"
        var options = TargetServer.Options(rootPath: root.root, idleTimeout: idleTimeout, journaled: journaled,
                                           executablePath: CommandLine.arguments[0])
        options.lockWait = lockWait
        options.mapMemoryLimit = mapMemoryLimit
        options.frameTimeout = frameTimeout
        options.progressTimeout = progressTimeout
        // No recovery of the whole root here: each disk session recovers its own disk under its
        // lock before its pass; the rest is the boot unit's `recover` (Appliance/).
        let server = TargetServer(options: options, logger: logger)
        let stream = FileDescriptorStream(readFD: 0, writeFD: 1, name: "source (stdin/stdout)", idleTimeout: idleTimeout,
                                          ownsDescriptors: false)
        do {
            try server.serve(stream: stream, version: VZVersion.current)
        } catch {
            throw ExitCode(1)
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the replicas under the root, their generation and state.",
        discussion: """
        The map is checked whole (MAP: valid, corrupt, missing); UNDO says whether a pass left a \
        journal (pending: what recovery will do is printed below the table; corrupt: recovery is \
        blocked); below the table, each job's disk set (vzdisks: its disks, those with no replica \
        yet, or a damaged record) and the last committed pass of each disk (DISK.vzpass: time, \
        generation, bytes, pass id). --json prints the same with the events' field names, plus \
        pending, mapBytes, mapEntries, lastPass, cbtChangeId (null until CBT exists), replica, \
        diskSetStatus, diskSet, diskSetReason, inDiskSet (Docs/operations.md).
        """)

    @OptionGroup var root: RootOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let disks = try ReplicaInspector.status(rootPath: root.root)
        if json {
            // Through JSONSerialization so that fields the encoder would omit print as null:
            // cbtChangeId (until CBT exists), lastPass when there is none, diskSet and inDiskSet
            // without a readable disk set record.
            let enc = JSONEncoder()
            var objects: [Any] = []
            for d in disks {
                var o = try JSONSerialization.jsonObject(with: try enc.encode(d)) as? [String: Any] ?? [:]
                for key in ["cbtChangeId", "lastPass", "diskSet", "inDiskSet"] where o[key] == nil { o[key] = NSNull() }
                objects.append(o)
            }
            let data = try JSONSerialization.data(withJSONObject: objects, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("JOB".padding(16) + "DISK".padding(12) + "CAPACITY".padding(16) + "GEN".padding(6) + "MAP".padding(9)
              + "CID".padding(10) + "UNDO".padding(9) + "LAST COMMIT")
        for d in disks {
            let capacity = d.capacityBytes.map { "\($0)" } ?? "-"
            let generation = d.generation.map { "\($0)" } ?? "-"
            var line = d.job.padding(16) + d.disk.padding(12) + capacity.padding(16) + generation.padding(6)
            line += (d.replica ? d.mapStatus.rawValue : "-").padding(9) + (d.cid ?? "-").padding(10)
            line += (d.replica ? d.undo.rawValue : "-").padding(9)
            print(line + (d.replica ? d.lastCommit ?? "-" : "(no replica yet)"))
        }
        var jobsShown: Set<String> = []
        for d in disks where jobsShown.insert(d.job).inserted {
            print(Status.diskSetLine(job: d.job, of: disks.filter { $0.job == d.job }))
        }
        for d in disks where d.replica {
            if d.mapStatus == .corrupt, let why = d.mapReason { print("\(d.job)/\(d.disk): map corrupt: \(why)") }
            switch d.undo {
            case .none: break
            case .pending:
                print("\(d.job)/\(d.disk): unfinished pass \(d.undoPassId ?? "?") from generation \(d.undoStartGeneration.map { "\($0)" } ?? "?"): "
                      + "recovery will \(d.undoAction ?? "?") — \(d.undoReason ?? "")")
            case .corrupt:
                print("\(d.job)/\(d.disk): undo journal corrupt: \(d.undoReason ?? "")")
            }
            if let chain = d.chain {
                print("\(d.job)/\(d.disk): source chain: " + (chain.isEmpty ? "none (not a VMDK)"
                      : chain.map { "\($0.file) (CID \($0.cid), parent \($0.parentCID))" }.joined(separator: " -> ")))
            }
            if let p = d.lastPass {
                print("\(d.job)/\(d.disk): last pass \(p.passId ?? "(no pass id)") committed \(p.committedAt), generation \(p.generation): "
                      + "scanned \(p.scannedBytes), changed \(p.changedBytes) (\(p.zeroBytes) zeroed) bytes in \(String(format: "%.1f", p.seconds)) s")
            } else if let note = d.lastPassNote {
                print("\(d.job)/\(d.disk): last pass: \(note)")
            }
        }
    }
}

extension Status {
    /// One line per job: its recorded disk set (`vzdisks`) and the disks the set and the
    /// replicas disagree on.
    static func diskSetLine(job: String, of rows: [ReplicaInspector.DiskStatus]) -> String {
        guard let first = rows.first else { return "" }
        switch first.diskSetStatus {
        case .damaged:
            return "\(job): disk set record damaged: \(first.diskSetReason ?? "")"
        case .none:
            return "\(job): no disk set record (the next pass of a protocol-3 source records one)"
        case .recorded:
            var line = "\(job): disk set (vzdisks): \((first.diskSet ?? []).joined(separator: ", "))"
            let noReplica = rows.filter { !$0.replica }.map(\.disk)
            let outside = rows.filter { $0.replica && $0.inDiskSet == false }.map(\.disk)
            if !noReplica.isEmpty { line += "; no replica yet: \(noReplica.joined(separator: ", ")) (the next pass seeds it)" }
            if !outside.isEmpty {
                line += "; replicas not in the set: \(outside.joined(separator: ", ")) (the job's passes fail as hardwareChanged until the set agrees: add-disk or remove-disk)"
            }
            return line
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash a replica against its .vzmap; exit 1 and name the first differing block on mismatch.",
        discussion: """
        Exit 0: every block matches; 1: a block differs; 2: cannot verify (no replica, map missing \
        or corrupt). --json prints one object: {"ok": true, "job", "disk", "blocks", "generation"}, \
        or {"ok": false, "job", "disk", "mismatch": {"block", "offset", "expected", "actual"}}, \
        or {"ok": false, "job", "disk", "error": {"kind", "message"}}.
        """)

    @OptionGroup var root: RootOptions
    @Option(help: ArgumentHelp("The job NAME: the folder ROOT/JOB (the \"job\" field of the job file), not a job file.",
                               valueName: "name")) var job: String
    @Option(help: "The disk name.") var disk: String

    @Flag(help: "Print one JSON object instead of a sentence.")
    var json = false

    func run() throws {
        var result: [String: Any] = ["job": job, "disk": disk]
        let sentence: String
        let code: Int32
        do {
            let (blocks, generation) = try ReplicaInspector.verify(rootPath: root.root, job: job, disk: disk)
            result["ok"] = true; result["blocks"] = blocks; result["generation"] = generation
            sentence = "OK, \(blocks) blocks match the map (generation \(generation))"
            code = 0
        } catch let m as ReplicaInspector.Mismatch {
            result["ok"] = false
            result["mismatch"] = ["block": m.block, "offset": m.offset, "expected": m.expectedDescription, "actual": m.actualDescription]
            sentence = "MISMATCH at \(m)"
            code = 1
        } catch {
            let e = error as? VZError ?? VZError(.internal, "\(error)")
            result["ok"] = false
            result["error"] = ["kind": e.kind.rawValue, "message": e.message]
            sentence = "cannot verify: \(e.message)"
            code = 2
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(job)/\(disk): \(sentence)")
        }
        if code != 0 { throw ExitCode(code) }
    }
}

struct Recover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roll back every unfinished pass under the root and clean up after committed ones (idempotent).")

    @OptionGroup var root: RootOptions
    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.recovery")
        do {
            let outcomes = try DatastoreRecovery.recoverAll(rootPath: root.root, logger: logger)
            let acted = outcomes.filter { $0.action != .nothingToDo }
            for o in acted { print("\(o.job)/\(o.disk): \(o.action) — \(o.reason) (\(o.restoredBytes) bytes restored)") }
            print("\(outcomes.count) disk(s) checked under \(root.root), \(acted.count) had an unfinished pass")
        } catch {
            print("recovery failed: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Rollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Roll back one disk's unfinished pass with its .vzundo (what vzundo-script runs).",
        discussion: "A pass that already committed is not rolled back: only its leftover journal is removed.")

    @OptionGroup var root: RootOptions
    @Option(help: ArgumentHelp("The job NAME: the folder ROOT/JOB (the \"job\" field of the job file), not a job file.",
                               valueName: "name")) var job: String
    @Option(help: "The disk name.") var disk: String
    @Option(help: "Wait this many seconds for a running session to release the disk.") var lockWait: Double = 10
    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.recovery")
        do {
            let o = try DatastoreRecovery.recoverDisk(root: try Directory.openRoot(root.root), job: job, disk: disk,
                                                      lockWait: lockWait, logger: logger)
            print("\(job)/\(disk): \(o.action) — \(o.reason) (\(o.restoredBytes) bytes restored)")
        } catch {
            print("\(job)/\(disk): rollback failed: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Grow one disk's replica (data file, descriptor, map) after its source disk grew.",
        discussion: """
        The VM's hardware cannot change during replication: when a source disk grows, passes \
        fail (exit 3) until the replica is reconfigured the same way with this command (and the \
        job file's capacityBytes updated). Shrinking is refused. An unfinished pass is rolled back first.
        """)

    @OptionGroup var root: RootOptions
    @Option(help: ArgumentHelp("The job NAME: the folder ROOT/JOB (the \"job\" field of the job file), not a job file.",
                               valueName: "name")) var job: String
    @Option(help: "The disk name.") var disk: String
    @Option(help: "The new size in bytes (a multiple of 512, not smaller than the replica).") var capacity: UInt64
    @Option(help: "Wait this many seconds for a running session to release the disk.") var lockWait: Double = 10
    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.resize")
        do {
            let o = try ReplicaResize.grow(root: try Directory.openRoot(root.root), job: job, disk: disk, capacity: capacity,
                                           lockWait: lockWait, logger: logger)
            print(o.oldCapacity == o.newCapacity ? "\(job)/\(disk): already \(o.newCapacity) bytes"
                  : "\(job)/\(disk): grown from \(o.oldCapacity) to \(o.newCapacity) bytes; map \(o.mapKept ? "grown" : "not valid, the next pass hashes the replica")")
        } catch {
            print("\(job)/\(disk): resize failed: \(error)")
            throw ExitCode(1)
        }
    }
}

struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a support bundle (.tar.gz) for a field engineer: logs, status, every working file decoded, sshd -t, free space.",
        discussion: """
        Contents: Docs/operations.md, "Support bundles". Replica data, maps and keys are never \
        included. Written atomically; exit 0, or 1 when it could not be written.
        """)

    @OptionGroup var root: RootOptions

    @Option(help: ArgumentHelp("The directory of the log file vzrepl-target.log (default: $VZREPL_LOG_DIR, else /var/log/vzrepl).", valueName: "dir"))
    var logDir: String?

    @Option(help: ArgumentHelp("The bundle to write, e.g. vzrepl-target-diag.tar.gz.", valueName: "file"))
    var output: String

    func run() throws {
        let bundle = TargetDiagnosis.collect(rootPath: root.root, logFile: LineLogHandler.logFilePath(agent: TargetServer.agentName, file: nil, directory: logDir),
                                             version: VZVersion.current)
        do {
            try bundle.write(to: output)
            print("\(output): \(bundle.entries.count + 1) files\(bundle.notes.isEmpty ? "" : ", \(bundle.notes.count) not collected (see MANIFEST.txt)")")
        } catch {
            FileHandle.standardError.write(Data("error: \((error as? VZError)?.message ?? "\(error)")\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { padding(toLength: Swift.max(n, count + 1), withPad: " ", startingAt: 0) }
}

struct AddDisk: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add-disk",
        abstract: "Record a disk added to a job's VM, so the next pass seeds its replica.",
        discussion: """
        The VM's hardware cannot change during replication: a pass whose job has a disk the \
        target did not record for the job fails (hardwareChanged, exit 3) before anything is \
        written. Once the target VM has the new disk too, this command adds it to the job's disk \
        set (ROOT/JOB/vzdisks); the next pass creates and seeds its replica. A disk already in \
        the set is left as it is (exit 0). Docs/operations.md, "Adding and removing disks".
        """)

    @OptionGroup var root: RootOptions
    @Option(help: ArgumentHelp("The job NAME: the folder ROOT/JOB (the \"job\" field of the job file), not a job file.",
                               valueName: "name")) var job: String
    @Option(help: "The name of the new disk (the disk's \"name\" in the job file).") var disk: String
    @Option(help: "Wait this many seconds for another command or session to release the job.") var lockWait: Double = 10
    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.reconfigure")
        do {
            let o = try JobDiskSet.add(disk: disk, root: try Directory.openRoot(root.root), job: job, lockWait: lockWait, logger: logger)
            print(o.changed ? "\(job)/\(disk): added to the job's disk set (\(o.disks.joined(separator: ", "))); the next pass seeds it"
                  : "\(job)/\(disk): already in the job's disk set")
        } catch {
            print("\(job)/\(disk): add-disk failed: \((error as? VZError)?.message ?? "\(error)")")
            throw ExitCode(1)
        }
    }
}

struct RemoveDisk: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove-disk",
        abstract: "Delete the replica of a disk removed from a job's VM, and drop it from the job's disk set.",
        discussion: """
        A pass whose job no longer has a disk the target recorded for it fails \
        (hardwareChanged, exit 3) before anything is written. Once the disk is removed from the \
        target VM too, this command deletes every file of the disk's replica (DISK.vmdk, \
        DISK-flat.vmdk, DISK.vzmap, DISK.vzcid, an unfinished pass's DISK.vzundo) and drops the \
        disk from ROOT/JOB/vzdisks. Copy the replica away first to keep it. It waits for a \
        session of the disk to finish. Docs/operations.md, "Adding and removing disks".
        """)

    @OptionGroup var root: RootOptions
    @Option(help: ArgumentHelp("The job NAME: the folder ROOT/JOB (the \"job\" field of the job file), not a job file.",
                               valueName: "name")) var job: String
    @Option(help: "The name of the removed disk.") var disk: String
    @Option(help: "Wait this many seconds for a running session to release the disk and the job.") var lockWait: Double = 10
    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.reconfigure")
        do {
            let o = try JobDiskSet.remove(disk: disk, root: try Directory.openRoot(root.root), job: job, lockWait: lockWait, logger: logger)
            guard o.changed else { print("\(job)/\(disk): not in the job's disk set and no replica files; nothing to do"); return }
            print("\(job)/\(disk): removed" + (o.removedFiles.isEmpty ? " (it had no replica files)" : "; deleted \(o.removedFiles.joined(separator: ", "))")
                  + "; disk set now " + (o.disks.isEmpty ? "empty (the next pass records a new one)" : o.disks.joined(separator: ", ")))
        } catch {
            print("\(job)/\(disk): remove-disk failed: \((error as? VZError)?.message ?? "\(error)")")
            throw ExitCode(1)
        }
    }
}

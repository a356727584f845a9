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
        of the replication key (Appliance/authorized_keys.template). Logs go to stderr and to the \
        log file; stdout of `serve` carries the protocol and nothing else.

        Layout under the root: JOB/DISK.vmdk (descriptor), JOB/DISK-flat.vmdk (data), \
        JOB/DISK.vzmap (block hashes), JOB/DISK.vzundo and JOB/vzundo-script during a pass. \
        See Docs/operations.md.

        --job is a job NAME here (the folder ROOT/JOB, the "job" field of the job file); \
        vzrepl-source's --job is a job FILE.
        """,
        version: VZVersion.banner(agent: TargetServer.agentName),
        subcommands: [Serve.self, Status.self, Verify.self, Recover.self, Rollback.self, Resize.self])
}

struct RootOptions: ParsableArguments {
    @Option(help: "The datastore root that holds the replicas.")
    var root: String
}

struct LogOptions: ParsableArguments {
    @Option(help: "Log file (appended). Default: $VZREPL_LOG_DIR/vzrepl-target.log, else /var/log/vzrepl/vzrepl-target.log.")
    var logFile: String?

    @Option(help: "Log level: \(LineLogHandler.levelNames.joined(separator: ", ")).")
    var logLevel: String = "info"

    func validate() throws {
        guard LineLogHandler.levelNames.contains(logLevel) else {
            throw ValidationError("--log-level '\(logLevel)' is not a log level (allowed: \(LineLogHandler.levelNames.joined(separator: ", ")))")
        }
    }

    func bootstrap() { LineLogHandler.bootstrap(agent: "vzrepl-target", filePath: logFile, levelName: logLevel) }
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
        blocked). --json prints the same with the events' field names (Docs/operations.md).
        """)

    @OptionGroup var root: RootOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let disks = try ReplicaInspector.status(rootPath: root.root)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            print(String(decoding: try enc.encode(disks), as: UTF8.self))
            return
        }
        print("JOB".padding(16) + "DISK".padding(12) + "CAPACITY".padding(16) + "GEN".padding(6) + "MAP".padding(9)
              + "CID".padding(10) + "UNDO".padding(9) + "LAST COMMIT")
        for d in disks {
            let capacity = d.capacityBytes.map { "\($0)" } ?? "-"
            let generation = d.generation.map { "\($0)" } ?? "-"
            var line = d.job.padding(16) + d.disk.padding(12) + capacity.padding(16) + generation.padding(6)
            line += d.mapStatus.rawValue.padding(9) + (d.cid ?? "-").padding(10) + d.undo.rawValue.padding(9)
            print(line + (d.lastCommit ?? "-"))
        }
        for d in disks {
            if d.mapStatus == .corrupt, let why = d.mapReason { print("\(d.job)/\(d.disk): map corrupt: \(why)") }
            switch d.undo {
            case .none: break
            case .pending:
                print("\(d.job)/\(d.disk): unfinished pass \(d.undoPassId ?? "?") from generation \(d.undoStartGeneration.map { "\($0)" } ?? "?"): "
                      + "recovery will \(d.undoAction ?? "?") — \(d.undoReason ?? "")")
            case .corrupt:
                print("\(d.job)/\(d.disk): undo journal corrupt: \(d.undoReason ?? "")")
            }
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

extension String {
    func padding(_ n: Int) -> String { padding(toLength: Swift.max(n, count + 1), withPad: " ", startingAt: 0) }
}

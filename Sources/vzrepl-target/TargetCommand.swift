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
        """,
        version: "vzrepl-target \(VZVersion.current)",
        subcommands: [Serve.self, Status.self, Verify.self, Recover.self, Rollback.self])
}

struct RootOptions: ParsableArguments {
    @Option(help: "The datastore root that holds the replicas.")
    var root: String
}

struct LogOptions: ParsableArguments {
    @Option(help: "Log file (appended). Default: $VZREPL_LOG_DIR/vzrepl-target.log, else /var/log/vzrepl/vzrepl-target.log.")
    var logFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

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
        options.frameTimeout = frameTimeout
        options.progressTimeout = progressTimeout
        let server = TargetServer(options: options, logger: logger)
        // Settle what an earlier crash left behind before anything new starts.
        do {
            _ = try DatastoreRecovery.recoverAll(rootPath: root.root, logger: logger)
        } catch {
            logger.error("recovery at start: \(error) (the disk concerned is recovered again before its next pass)")
        }
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
    static let configuration = CommandConfiguration(abstract: "List the replicas under the root, their generation and state.")

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
              + "CID".padding(10) + "UNDO".padding(6) + "LAST COMMIT")
        for d in disks {
            print(d.job.padding(16) + d.disk.padding(12) + (d.capacityBytes.map { "\($0)" } ?? "-").padding(16)
                  + (d.generation.map { "\($0)" } ?? "-").padding(6) + d.mapState.padding(9) + (d.cid ?? "-").padding(10)
                  + (d.pendingUndo ? "yes" : "no").padding(6) + (d.lastCommit ?? "-"))
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash a replica against its .vzmap; exit 1 and name the first differing block on mismatch.")

    @OptionGroup var root: RootOptions
    @Option(help: "The job name.") var job: String
    @Option(help: "The disk name.") var disk: String

    func run() throws {
        do {
            let (blocks, generation) = try ReplicaInspector.verify(rootPath: root.root, job: job, disk: disk)
            print("\(job)/\(disk): OK, \(blocks) blocks match the map (generation \(generation))")
        } catch let m as ReplicaInspector.Mismatch {
            print("\(job)/\(disk): MISMATCH at \(m)")
            throw ExitCode(1)
        } catch let e as VZError {
            print("\(job)/\(disk): cannot verify: \(e.message)")
            throw ExitCode(2)
        }
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
    @Option(help: "The job name.") var job: String
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

extension String {
    func padding(_ n: Int) -> String { padding(toLength: Swift.max(n, count + 1), withPad: " ", startingAt: 0) }
}

import ArgumentParser
import Foundation
import Glibc
import Logging
import VZCore
import VZPlatform
import VZSource

@main
struct SourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vzrepl-source",
        abstract: "The source agent of vzrepl: replicates VM disks to a vzrepl-target over SSH.",
        discussion: """
        stdout carries JSON-lines events (one object per line, each with an "event" field: \
        pass-started, disk-started, map-untrusted, volumes, disk-progress, disk-finished, error, pass-finished; \
        plan: plan-started, disk-plan, plan-finished). When stdout is a terminal (and no --json), \
        a live progress line per disk goes to stderr instead. \
        Logs (one logfmt line per event, with job, disk and the pass id) go to stderr and to the log file \
        (--log-dir). `diagnose` writes a support bundle.

        Exit codes: 0 every disk committed; otherwise the first failed disk's (job order): 1 internal error; 2 bad job file or arguments; \
        3 source disk error (unreadable, resized); 4 transport error (SSH, connection, protocol); \
        5 the target refused or failed (space, I/O, corrupt state).

        --job is a job FILE here (a path to its JSON); vzrepl-target's --job is a job NAME. \
        See Docs/events.md and Docs/operations.md.
        """,
        version: VZVersion.banner(agent: SourceAgent.agentName),
        subcommands: [Replicate.self, Plan.self, CheckJob.self, ABMMap.self, Diagnose.self])

    /// ArgumentParser's `main`, except that a usage error (unknown option, missing or bad value)
    /// exits 2 as Docs/events.md says, not 64, and `replicate` reports it as events too.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            if arguments.first == Replicate._commandName {
                let label = JobArgument.value(in: arguments).map { loadJob($0).label } ?? ""
                UnstartedPass.report(VZError(.badArgument, message(for: error)), events: EventEmitter(job: label),
                                     version: VZVersion.current)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Glibc.exit(SourceAgent.ExitCode.badJobFile.rawValue)
        }
        do {
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// `--job FILE` found by hand, for the events of a command line ArgumentParser refused.
enum JobArgument {
    /// The value of `--job` (`--job F` or `--job=F`), if the command line has one.
    static func value(in arguments: [String]) -> String? {
        for (i, a) in arguments.enumerated() {
            if a == "--job", i + 1 < arguments.count { return arguments[i + 1] }
            if a.hasPrefix("--job=") { return String(a.dropFirst("--job=".count)) }
        }
        return nil
    }
}

struct LogOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of the log file vzrepl-source.log (logfmt lines, appended). Default: $VZREPL_LOG_DIR, else /var/log/vzrepl; when the file cannot be opened there, logs go to stderr only (and the first line says so).",
                               valueName: "dir"))
    var logDir: String?

    @Option(help: "Log file (appended), instead of vzrepl-source.log in --log-dir.")
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

    var filePath: String { LineLogHandler.logFilePath(agent: "vzrepl-source", file: logFile, directory: logDir) }

    func bootstrap() { LineLogHandler.bootstrap(filePath: filePath, level: level, maxFileBytes: logMaxMib << 20) }
}

/// A job file is at most 1 MiB (Docs/job-file.md).
let maxJobFileSize = 1 << 20

/// Reads (bounded: SmallFile) and validates a job file. `label` names the pass in its events even
/// when the file is bad: the job name when the file holds a valid one, else the path as given.
func loadJob(_ path: String) -> (label: String, result: Result<JobConfig, JobFileError>) {
    let bytes: [UInt8]
    do {
        bytes = try SmallFile.read(path, maxSize: maxJobFileSize, what: "job file", errorKind: .badJobFile)
    } catch {
        let message = (error as? VZError)?.message ?? "\(error)"
        let reason = message.hasPrefix(path + ": ") ? String(message.dropFirst(path.count + 2)) : "cannot read the job file: \(message)"
        return (path, .failure(JobFileError(fileName: path, field: nil, reason: reason)))
    }
    let label = JobConfig.jobName(in: bytes) ?? path
    do {
        return (label, .success(try JobConfig.decode(bytes, fileName: path)))
    } catch let e as JobFileError {
        return (label, .failure(e))
    } catch {
        return (label, .failure(JobFileError(fileName: path, field: nil, reason: "\(error)")))
    }
}

struct Replicate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one pass over every disk of a job.",
        discussion: "Example job file: Docs/samples/job-exec.json. Format: Docs/job-file.md. Events and exit codes: Docs/events.md.")

    @Option(help: ArgumentHelp("The job FILE: a path to the job's JSON (Docs/job-file.md). Not a job name, unlike vzrepl-target's --job.",
                               valueName: "file"))
    var job: String

    static let workerRange = 1...64
    @Option(help: "Worker threads that read, hash and compress (\(workerRange.lowerBound) to \(workerRange.upperBound)).")
    var workers: Int = 2

    @Flag(help: "Keep the working files (the active-block filter DISK.vmdk-abbt.vztemp) in the job's workDir for a field engineer.")
    var keepTemp = false

    @Flag(help: "JSON-lines events on stdout even when it is a terminal (by default a terminal gets a live progress line per disk on stderr instead).")
    var json = false
    @Option(help: ArgumentHelp("Write the pass summary here in Prometheus text format (atomically; for node_exporter's textfile collector, name it *.prom).",
                               valueName: "path"))
    var metricsFile: String?

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard Replicate.workerRange.contains(workers) else {
            throw ValidationError("--workers \(workers) is out of range (allowed: \(Replicate.workerRange.lowerBound) to \(Replicate.workerRange.upperBound))")
        }
    }

    func run() throws {
        log.bootstrap()
        MemoryTuning.apply()
        let logger = Logger(label: "vzrepl.source")
        let (label, loaded) = loadJob(job)
        let config: JobConfig
        switch loaded {
        case let .success(c):
            config = c
        case let .failure(e):
            logger.failure("the job file is not valid", e.vzError)
            throw ExitCode(UnstartedPass.report(e.vzError, events: EventEmitter(job: label), version: VZVersion.current).rawValue)
        }
        let agent = SourceAgent(job: config, events: eventEmitter(job: config.job, json: json), logger: logger, version: VZVersion.current)
        agent.workers = workers
        agent.keepTemp = keepTemp
        agent.metricsPath = metricsFile
        let code = agent.replicate()
        if code != .ok { throw ExitCode(code.rawValue) }
    }
}

/// JSON lines on stdout for a controller; for a person at a terminal (stdout is a tty and no
/// `--json`), a live progress line per disk on stderr instead.
func eventEmitter(job: String, json: Bool) -> EventEmitter {
    if !json && isatty(STDOUT_FILENO) == 1 { return EventEmitter(job: job, display: ProgressDisplay()) }
    return EventEmitter(job: job)
}

struct Plan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a pass would read and send, per disk, without changing anything on the target.",
        discussion: """
        Opens every disk of the job read-only on the target (protocol version 3): the target reports \
        each disk's map and creates or writes nothing (it holds the disk's lock shared while it reads the map). \
        The source then reads, hashes and \
        compresses like a pass and counts instead of sending. stdout: JSON lines plan-started, \
        disk-plan (one per disk), volumes (ABM), disk-progress, error, plan-finished (Docs/events.md). \
        Exit codes as for replicate; a target of protocol version 2 cannot plan (exit 4, versionMismatch).
        """)

    @Option(help: ArgumentHelp("The job FILE: a path to the job's JSON (Docs/job-file.md).", valueName: "file"))
    var job: String

    @Option(help: "Worker threads that read, hash and compress (\(Replicate.workerRange.lowerBound) to \(Replicate.workerRange.upperBound)).")
    var workers: Int = 2

    @Flag(help: "JSON-lines events on stdout even when it is a terminal.")
    var json = false

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard Replicate.workerRange.contains(workers) else {
            throw ValidationError("--workers \(workers) is out of range (allowed: \(Replicate.workerRange.lowerBound) to \(Replicate.workerRange.upperBound))")
        }
    }

    func run() throws {
        log.bootstrap()
        let logger = Logger(label: "vzrepl.source")
        let (label, loaded) = loadJob(job)
        switch loaded {
        case let .success(config):
            let agent = SourceAgent(job: config, events: eventEmitter(job: config.job, json: json), logger: logger, version: VZVersion.current)
            agent.workers = workers
            let code = agent.plan()
            if code != .ok { throw ExitCode(code.rawValue) }
        case let .failure(e):
            logger.error("\(e.vzError)")
            let events = EventEmitter(job: label)
            let code = SourceAgent.ExitCode(for: e.vzError.kind)
            events.emit("error", ["kind": e.vzError.kind.rawValue, "message": e.message, "transient": false, "exitCode": Int(code.rawValue)])
            events.emit("plan-finished", ["ok": false, "exitCode": Int(code.rawValue), "seconds": 0.0, "disks": [Any]()])
            throw ExitCode(code.rawValue)
        }
    }
}

struct CheckJob: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a job file and exit (0 valid, 2 invalid).",
        discussion: """
        With --json, stdout is one JSON object: {"valid": true, "job", "disks", "mode", "transport"} \
        or {"valid": false, "error": {"kind", "message", "field"}} (field: when one field is at fault).
        """)

    @Option(help: ArgumentHelp("The job FILE: a path to the job's JSON (Docs/job-file.md). Not a job name, unlike vzrepl-target's --job.",
                               valueName: "file"))
    var job: String

    @Flag(help: "Print one JSON object instead of a sentence.")
    var json = false

    func run() throws {
        switch loadJob(job).result {
        case let .success(config):
            if json {
                print(CheckJob.encode(["valid": true, "job": config.job, "disks": config.disks.map(\.name),
                                       "mode": config.mode.rawValue, "transport": config.target.transport.rawValue]))
            } else {
                print("\(job): valid job '\(config.job)', \(config.disks.count) disk(s), mode \(config.mode.rawValue), transport \(config.target.transport.rawValue)")
            }
        case let .failure(e):
            if json {
                var error: [String: Any] = ["kind": VZError.Kind.badJobFile.rawValue, "message": e.message]
                if let f = e.field { error["field"] = f }
                print(CheckJob.encode(["valid": false, "error": error]))
            } else {
                FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            }
            throw ExitCode(SourceAgent.ExitCode.badJobFile.rawValue)
        }
    }

    static func encode(_ object: [String: Any]) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

struct ABMMap: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abm-map",
        abstract: "Show what Active Block Mapping makes of a disk (volumes, active bytes), without a pass.",
        discussion: """
        Reads only partition tables and filesystem metadata, and writes nothing. stdout is one JSON \
        object: capacityBytes, activeBytes, activeBlockBytes (whole blocks of --block-size), extents, \
        metadataBytesRead, seconds, warnings, volumes (as in the volumes event, Docs/events.md). \
        Exit 0, or 3 when the disk cannot be opened.
        """)

    @Option(help: ArgumentHelp("A raw image file or block device.", valueName: "path"))
    var source: String

    @Option(help: "The replication block size to count whole blocks of.")
    var blockSize: UInt32 = JobConfig.defaultBlockSize

    func validate() throws {
        if let why = BlockSize.problem(with: blockSize) { throw ValidationError("--block-size \(blockSize): \(why)") }
    }

    func run() throws {
        do {
            print(CheckJob.encode(try ActiveBlockReport.describe(source: source, blockSize: blockSize)))
        } catch {
            FileHandle.standardError.write(Data("error: \((error as? VZError)?.message ?? "\(error)")\n".utf8))
            throw ExitCode(SourceAgent.ExitCode.sourceError.rawValue)
        }
    }
}

struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a support bundle (.tar.gz) for a field engineer: logs, the job (secrets redacted), working files, versions.",
        discussion: """
        Contents: Docs/operations.md, "Support bundles". The bundle never holds key material: the \
        private key file is not read, secret job fields are replaced by "<redacted>". Written \
        atomically; exit 0, or 1 when it could not be written.
        """)

    @Option(help: ArgumentHelp("The job FILE: a path to the job's JSON.", valueName: "file"))
    var job: String

    @Option(help: ArgumentHelp("The directory of the log file vzrepl-source.log (default: $VZREPL_LOG_DIR, else /var/log/vzrepl).", valueName: "dir"))
    var logDir: String?

    @Option(help: ArgumentHelp("The bundle to write, e.g. vzrepl-source-diag.tar.gz.", valueName: "file"))
    var output: String

    func run() throws {
        let bundle = SourceDiagnosis.collect(jobPath: job, logFile: LineLogHandler.logFilePath(agent: SourceAgent.agentName, file: nil, directory: logDir),
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

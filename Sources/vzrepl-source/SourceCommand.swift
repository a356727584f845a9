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
        pass-started, disk-started, map-untrusted, disk-progress, disk-finished, error, pass-finished). \
        Human-readable logs go to stderr and to the log file.

        Exit codes: 0 every disk committed; 1 internal error; 2 bad job file or arguments; \
        3 source disk error (unreadable, resized); 4 transport error (SSH, connection, protocol); \
        5 the target refused or failed (space, I/O, corrupt state).

        See Docs/operations.md for troubleshooting.
        """,
        version: "vzrepl-source \(VZVersion.current)",
        subcommands: [Replicate.self, CheckJob.self])
}

struct LogOptions: ParsableArguments {
    @Option(help: "Log file (appended). Default: $VZREPL_LOG_DIR/vzrepl-source.log, else /var/log/vzrepl/vzrepl-source.log.")
    var logFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func bootstrap() { LineLogHandler.bootstrap(agent: "vzrepl-source", filePath: logFile, levelName: logLevel) }
}

func loadJob(_ path: String) throws -> JobConfig {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw VZError(.badJobFile, "\(path): cannot read the job file: \(error.localizedDescription)")
    }
    guard data.count <= 1 << 20 else { throw VZError(.badJobFile, "\(path): larger than 1 MiB, not a job file") }
    return try JobConfig.parse(Array(data), fileName: path)
}

struct Replicate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one pass over every disk of a job.",
        discussion: "Example job file: Docs/samples/job-exec.json. Format: Docs/job-file.md.")

    @Option(help: "The job file (JSON).")
    var job: String

    @Option(help: "Worker threads that read, hash and compress.")
    var workers: Int = 2

    @OptionGroup var log: LogOptions

    func run() throws {
        log.bootstrap()
        MemoryTuning.apply()
        let logger = Logger(label: "vzrepl.source")
        let config: JobConfig
        do {
            config = try loadJob(job)
        } catch let e as VZError {
            EventEmitter(job: "").emit("error", ["kind": e.kind.rawValue, "message": e.message, "transient": false,
                                                 "exitCode": Int(SourceAgent.ExitCode.badJobFile.rawValue)])
            logger.error("\(e)")
            throw ExitCode(SourceAgent.ExitCode.badJobFile.rawValue)
        }
        let agent = SourceAgent(job: config, events: EventEmitter(job: config.job), logger: logger, version: VZVersion.current)
        agent.workers = max(1, workers)
        let code = agent.replicate()
        if code != .ok { throw ExitCode(code.rawValue) }
    }
}

struct CheckJob: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate a job file and exit (0 valid, 2 invalid).")

    @Option(help: "The job file (JSON).")
    var job: String

    func run() throws {
        do {
            let config = try loadJob(job)
            print("\(job): valid job '\(config.job)', \(config.disks.count) disk(s), mode \(config.mode.rawValue), transport \(config.target.transport.rawValue)")
        } catch let e as VZError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(SourceAgent.ExitCode.badJobFile.rawValue)
        }
    }
}

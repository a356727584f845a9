import Foundation
import VZCore

/// Frames `Message`s over a `ByteStream`: the banner exchange, then send and receive. The decoding
/// itself is the pure `FrameDecoder`; this only feeds it — and, being the one place frames are
/// received, it holds the peer to the deadlines of Docs/protocol.md §4: a frame whose first byte
/// arrived must be complete within `Limits.frameTimeout`, and a peer that sends nothing but
/// keepalives for `Limits.progressTimeout` is alive but stuck. (The stream's own idle timeout
/// covers a peer that sends nothing at all.)
public final class MessageChannel {
    public static let protocolVersion = Banner.protocolVersion

    /// The receive deadlines; nil switches one off.
    public struct Limits: Sendable, Equatable {
        /// 8 MiB frames (the largest block, sent raw) need ≥ 70 KB/s to make it.
        public static let defaultFrameTimeout = 120.0
        /// Long enough for one fsync of a pass's dirty data on a slow datastore, the one long
        /// step that cannot report progress while it runs.
        public static let defaultProgressTimeout = 300.0

        public var frameTimeout: Double?
        public var progressTimeout: Double?

        public init(frameTimeout: Double? = Limits.defaultFrameTimeout, progressTimeout: Double? = Limits.defaultProgressTimeout) {
            self.frameTimeout = frameTimeout
            self.progressTimeout = progressTimeout
        }
    }

    public let stream: ByteStream
    public let peerName: String
    public let limits: Limits
    /// The protocol version of the peer's banner (0 before the exchange). A version-1 peer gets
    /// no progress frames and is not held to the progress timeout (it cannot report progress).
    public private(set) var peerProtocolVersion = 0
    private var decoder: FrameDecoder
    private var readBuffer: [UInt8]
    public private(set) var bytesSent: UInt64 = 0
    /// Sends may come from the session thread and a heartbeat at once; frames stay whole.
    private let sendLock = NSLock()
    public private(set) var bytesReceived: UInt64 = 0
    /// When the first byte of the frame now partly in the decoder arrived, while we were reading.
    private var frameStartedAt: Double?
    private var lastReadAt = 0.0
    /// The highest work count the peer reported in a `progress` frame.
    private var peerProgress: UInt64 = 0
    /// The step a version-3 peer said it is in, in its latest `progress` frame.
    public private(set) var peerStep: WorkStep?
    /// Called on the receiving thread for every keepalive and progress frame, with the peer's
    /// step (nil from a version-1 or 2 peer): the source shows a target's long silences.
    public var onPeerBeat: ((WorkStep?) -> Void)?
    /// `bandwidthLimit`: paces every frame this channel writes (but heartbeats: they are tiny, and
    /// must never wait past the peer's idle timeout). Shared by the sessions of one job.
    public var limiter: BandwidthLimiter?
    /// Told of every frame sent (true) and received (false): its type byte and size with the
    /// header. `--debug` logs a summary of them (`FrameTrace`). Set before the session starts.
    public var frameObserver: ((_ sent: Bool, _ type: UInt8, _ bytes: Int) -> Void)?

    public init(stream: ByteStream, peerName: String, maxPayload: Int = Frame.maxPayload, limits: Limits = Limits()) {
        self.stream = stream
        self.peerName = peerName
        self.limits = limits
        decoder = FrameDecoder(maxPayload: maxPayload)
        readBuffer = [UInt8](repeating: 0, count: 256 * 1024)
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private var progressTimeout: Double? { peerProtocolVersion >= 2 ? limits.progressTimeout : nil }

    /// Sends our banner line and checks the peer's (`Banner`): "VZREPL/3 <agent> <version>\n".
    /// Once its first byte is in, the line is held to the frame timeout like a frame.
    public func exchangeBanners(agent: String, version: String) throws -> String {
        try stream.write(Banner.encode(agent: agent, version: version))
        var parser = BannerParser(peerName: peerName)
        var byte = [UInt8](repeating: 0, count: 1)
        var firstByteAt: Double?
        // Byte by byte: the banner is tiny and frames follow it immediately.
        while true {
            var timeout: Double?
            if let limit = limits.frameTimeout, let start = firstByteAt {
                timeout = start + limit - MessageChannel.now()
                if timeout! <= 0 { throw bannerTimeout(limit) }
            }
            guard let n = try byte.withUnsafeMutableBytes({ try stream.read(into: $0, timeout: timeout) }) else {
                throw bannerTimeout(limits.frameTimeout ?? 0)
            }
            guard n == 1 else { throw parser.endOfStream() }
            if firstByteAt == nil { firstByteAt = MessageChannel.now() }
            if let banner = try parser.feed(byte[0]) {
                peerProtocolVersion = banner.protocolVersion
                return banner.line
            }
        }
    }

    private func bannerTimeout(_ limit: Double) -> VZError {
        VZError(.timeout, "\(peerName): the protocol banner was not complete \(Self.seconds(limit)) s after its first byte (frame timeout): the peer or the link is stalled")
    }

    public func send(_ message: Message) throws {
        try sendEncoded(message.encodedFrame())
    }

    /// Sends an already encoded frame (the pipeline encodes block frames on worker threads).
    public func sendEncoded(_ frame: [UInt8]) throws {
        sendLock.lock()
        defer { sendLock.unlock() }
        if frame.count > 2 { frameObserver?(true, frame[2], frame.count) }
        guard let limiter else {
            try stream.write(frame)
            bytesSent += UInt64(frame.count)
            return
        }
        // Paced in small pieces, so a large block frame is spread over time, not sent in a burst.
        let chunk = limiter.chunkSize
        var start = 0
        try frame.withUnsafeBytes { raw in
            while start < raw.count {
                let end = min(start + chunk, raw.count)
                limiter.wait(for: end - start)
                try stream.write(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                bytesSent += UInt64(end - start)
                start = end
            }
        }
    }

    /// Runs `body` while a thread sends a heartbeat every `interval` seconds, so a long step that
    /// sends nothing (hashing, rebuilding a map, flushing) does not look like a dead peer to the
    /// other side's idle timeout, nor like a stuck one to its progress timeout: each beat is a
    /// `progress` frame carrying `counter` when it grew since the last beat, else a keepalive.
    /// The body advances the counter itself (`Heartbeat.advance`), or passes one that its I/O
    /// advances (`DiskActivity.counter`).
    ///
    /// A beat is skipped while another frame is being sent or the stream would block (a peer
    /// busy sending to us is not reading, and needs no proof of life). A beat that fails means the
    /// link is gone: `Heartbeat.advance` and `check` then throw that error, so a step that sends
    /// nothing for a long time stops instead of finishing its work for nobody.
    @discardableResult
    public func withHeartbeat<T>(every interval: Double = 1, counting counter: ProgressCounter = ProgressCounter(),
                                 _ body: (Heartbeat) throws -> T) throws -> T {
        let heartbeat = Heartbeat(counter: counter)
        let stop = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let keepalive = Message.keepalive.encodedFrame()
        let withProgress = peerProtocolVersion >= 2
        let withStep = peerProtocolVersion >= 3
        let thread = Thread { [self] in
            var reported: UInt64?
            while stop.wait(timeout: .now() + interval) == .timedOut {
                let count = counter.value
                // To a version-3 peer every beat within a step says which (a count that did not
                // grow is still only a keepalive to its progress timeout).
                let step = withStep ? heartbeat.step : nil
                let progressed = withProgress && (count != reported || step != nil)
                do {
                    if try sendBeat(progressed ? Message.progress(count, step: step).encodedFrame() : keepalive), progressed {
                        reported = count
                    }
                } catch {
                    heartbeat.fail(error)
                    break
                }
            }
            finished.signal()
        }
        thread.start()
        defer { stop.signal(); finished.wait() }
        return try body(heartbeat)
    }

    /// Sends one heartbeat frame unless a send is under way or the stream would block; returns
    /// whether it went out.
    private func sendBeat(_ frame: [UInt8]) throws -> Bool {
        guard sendLock.try() else { return false }
        defer { sendLock.unlock() }
        guard stream.canWriteWithoutBlocking(frame.count) else { return false }
        try stream.write(frame)
        bytesSent += UInt64(frame.count)
        if frame.count > 2 { frameObserver?(true, frame[2], frame.count) }
        return true
    }

    /// Makes a `receive` blocked on another thread, and every later one, fail at once (the
    /// target's receiving thread, when its pipeline has already failed).
    public func interruptReceive() { stream.interruptRead() }

    private enum Deadline { case frame, progress }

    /// The next message, or nil at a clean end of stream between frames. Keepalives are consumed
    /// here, and so are `progress` frames (a grown count is progress). Throws `.timeout` when a
    /// frame stays incomplete for the frame timeout, or when nothing but keepalives and stale
    /// progress frames come for the progress timeout. Both clocks run only while this waits:
    /// time we spend elsewhere (not reading) is never held against the peer.
    public func receive() throws -> Message? {
        var lastProgressAt = MessageChannel.now()
        if decoder.bufferedBytes > 0 { frameStartedAt = lastProgressAt }
        while true {
            if let frame = try decoder.nextFrame() {
                frameStartedAt = decoder.bufferedBytes > 0 ? lastReadAt : nil
                frameObserver?(false, frame.type, Frame.headerSize + frame.payload.count)
                let m = try Message.decode(frame, frameNumber: decoder.framesDecoded)
                switch m {
                case .keepalive:
                    onPeerBeat?(nil)
                    continue
                case let .progress(count, step):
                    if count > peerProgress {
                        peerProgress = count
                        lastProgressAt = MessageChannel.now()
                    }
                    peerStep = step
                    onPeerBeat?(step)
                    continue
                default:
                    return m
                }
            }
            // The nearer deadline bounds the wait: the frame's while one is partly in, else the
            // progress one (a partial frame is data in flight, not idling).
            var timeout: Double?
            var deadline = Deadline.frame
            let now = MessageChannel.now()
            if decoder.bufferedBytes > 0 {
                if let limit = limits.frameTimeout, let start = frameStartedAt { timeout = start + limit - now }
            } else if let limit = progressTimeout {
                timeout = lastProgressAt + limit - now
                deadline = .progress
            }
            if let t = timeout, t <= 0 { throw timeoutError(deadline) }
            // The rest of a block's payload is read straight into its frame (no copies).
            let direct = decoder.pendingSpace > 0
            let read: Int?
            if direct {
                read = try decoder.fillPending { try stream.read(into: $0, timeout: timeout) }
            } else {
                read = try readBuffer.withUnsafeMutableBytes { try stream.read(into: $0, timeout: timeout) }
            }
            guard let n = read else { throw timeoutError(deadline) }
            if n == 0 {
                if decoder.bufferedBytes > 0 {
                    throw VZError(.connectionLost, "\(peerName): connection closed in the middle of frame #\(decoder.framesDecoded + 1) (\(decoder.bufferedBytes) bytes of it received)")
                }
                return nil
            }
            lastReadAt = MessageChannel.now()
            if decoder.bufferedBytes == 0 { frameStartedAt = lastReadAt }
            bytesReceived += UInt64(n)
            if !direct { readBuffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) } }
        }
    }

    private func timeoutError(_ deadline: Deadline) -> VZError {
        switch deadline {
        case .frame:
            return VZError(.timeout, "\(peerName): frame #\(decoder.framesDecoded + 1) was not complete \(Self.seconds(limits.frameTimeout ?? 0)) s after its first byte (frame timeout; \(decoder.bufferedBytes) bytes of it arrived): the peer or the link is stalled mid-frame")
        case .progress:
            return VZError(.timeout, "\(peerName): alive but making no progress: nothing but keepalives for \(Self.seconds(limits.progressTimeout ?? 0)) s (progress timeout); the peer is stuck")
        }
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s)
    }

    /// Like `receive`, but an end of stream is an error naming what was expected, and an `error`
    /// message from the peer becomes a thrown `VZError` with the peer's kind.
    public func expect(_ what: String) throws -> Message {
        guard let m = try receive() else {
            throw VZError(.connectionLost, "\(peerName): connection closed while waiting for \(what)")
        }
        if case let .error(kind, message) = m {
            throw VZError(VZError.Kind(rawValue: kind) ?? .targetRefused, "\(peerName): \(message)")
        }
        return m
    }
}

/// What `MessageChannel.withHeartbeat` hands its body: the work counter the beats report, and
/// the link's failure once a beat could not be sent.
public final class Heartbeat: @unchecked Sendable {
    public let counter: ProgressCounter
    private let lock = NSLock()
    private var failure: Error?
    private var currentStep: WorkStep?

    /// The step the beats report to a version-3 peer (a beat goes out when it changes); nil:
    /// none.
    public var step: WorkStep? {
        get { lock.lock(); defer { lock.unlock() }; return currentStep }
        set { lock.lock(); currentStep = newValue; lock.unlock() }
    }

    init(counter: ProgressCounter) { self.counter = counter }

    /// Adds `units` of work (bytes hashed, say) to what the next beat reports; throws when the
    /// heartbeat found the link dead.
    public func advance(by units: UInt64) throws {
        counter.add(units)
        try check()
    }

    /// Throws the error of the beat that failed, if one did.
    public func check() throws {
        lock.lock()
        defer { lock.unlock() }
        if let f = failure { throw f }
    }

    func fail(_ error: Error) {
        lock.lock()
        if failure == nil { failure = error }
        lock.unlock()
    }
}

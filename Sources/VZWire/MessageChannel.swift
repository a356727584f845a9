import Foundation
import VZCore

/// Frames `Message`s over a `ByteStream`: the banner exchange, then send and receive. The decoding
/// itself is the pure `FrameDecoder`; this only feeds it.
public final class MessageChannel {
    public static let protocolVersion = Banner.protocolVersion

    public let stream: ByteStream
    public let peerName: String
    private var decoder: FrameDecoder
    private var readBuffer: [UInt8]
    private var pending: [UInt8] = []
    public private(set) var bytesSent: UInt64 = 0
    /// Sends may come from the session thread and a heartbeat at once; frames stay whole.
    private let sendLock = NSLock()
    public private(set) var bytesReceived: UInt64 = 0

    public init(stream: ByteStream, peerName: String, maxPayload: Int = Frame.maxPayload) {
        self.stream = stream
        self.peerName = peerName
        decoder = FrameDecoder(maxPayload: maxPayload)
        readBuffer = [UInt8](repeating: 0, count: 256 * 1024)
    }

    /// Sends our banner line and checks the peer's (`Banner`): "VZREPL/1 <agent> <version>\n".
    public func exchangeBanners(agent: String, version: String) throws -> String {
        try stream.write(Banner.encode(agent: agent, version: version))
        var parser = BannerParser(peerName: peerName)
        var byte = [UInt8](repeating: 0, count: 1)
        // Byte by byte: the banner is tiny and frames follow it immediately.
        while true {
            let n = try byte.withUnsafeMutableBytes { try stream.read(into: $0) }
            guard n == 1 else { throw parser.endOfStream() }
            if let banner = try parser.feed(byte[0]) { return banner.line }
        }
    }

    public func send(_ message: Message) throws {
        try sendEncoded(message.encodedFrame())
    }

    /// Sends an already encoded frame (the pipeline encodes block frames on worker threads).
    public func sendEncoded(_ frame: [UInt8]) throws {
        sendLock.lock()
        defer { sendLock.unlock() }
        try stream.write(frame)
        bytesSent += UInt64(frame.count)
    }

    /// Runs `body` while a thread sends a `keepalive` every `interval` seconds, so a long silent
    /// step (hashing, flushing) does not look like a dead peer to the other side's idle timeout.
    public func withHeartbeat<T>(every interval: Double = 1, _ body: () throws -> T) throws -> T {
        let stop = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let beat = Message.keepalive.encodedFrame()
        let thread = Thread { [self] in
            // A failed keepalive means the link is gone; the body's own I/O will say so.
            while stop.wait(timeout: .now() + interval) == .timedOut {
                if (try? sendEncoded(beat)) == nil { break }
            }
            finished.signal()
        }
        thread.start()
        defer { stop.signal(); finished.wait() }
        return try body()
    }

    /// The next message, or nil at a clean end of stream between frames. Keepalives are consumed
    /// here: their only effect is that bytes arrived.
    public func receive() throws -> Message? {
        while true {
            if let frame = try decoder.nextFrame() {
                let m = try Message.decode(frame, frameNumber: decoder.framesDecoded)
                if m == .keepalive { continue }
                return m
            }
            let n = try readBuffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 {
                if decoder.bufferedBytes > 0 {
                    throw VZError(.connectionLost, "\(peerName): connection closed in the middle of frame #\(decoder.framesDecoded + 1) (\(decoder.bufferedBytes) bytes of it received)")
                }
                return nil
            }
            bytesReceived += UInt64(n)
            readBuffer.withUnsafeBytes { decoder.append(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
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

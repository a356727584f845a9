import CLibSSH2
import Glibc
import VZCore

/// Copies the first bytes libssh2 receives on a new connection into a `KexInitParser`, so the
/// server's algorithm lists are known when libssh2's negotiation fails (it only says "Unable to
/// exchange encryption keys"). Installed as libssh2's RECV callback for the handshake only; the
/// session's `abstract` pointer (a `vz_ssh2_io`, whose `tap` is `opaque`) leads the C callback
/// back to this object.
final class KexInitTap {
    private var parser: KexInitParser
    private(set) var kexInit: KexInit?
    private(set) var parseError: VZError?
    /// libssh2's own recv, which does the actual socket read (and its errno conventions).
    fileprivate var underlying: vz_ssh2_recv_fn?
    private var installedOn: OpaquePointer?

    init(peer: String) { parser = KexInitParser(peer: peer) }

    var sawIdentification: Bool { parser.sawIdentification }
    var firstWords: String? { parser.firstWords }

    var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// Starts tapping `session`, whose abstract must be a `vz_ssh2_io` with `tap` set to `opaque`.
    func install(on session: OpaquePointer) {
        let tapRecv: vz_ssh2_recv_fn = { socket, buffer, length, flags, abstract in
            guard let io = abstract?.pointee?.assumingMemoryBound(to: vz_ssh2_io.self),
                  let context = io.pointee.tap else { return -Int(EINVAL) }
            let tap = Unmanaged<KexInitTap>.fromOpaque(context).takeUnretainedValue()
            guard let recv = tap.underlying else { return -Int(EINVAL) }
            let n = recv(socket, buffer, length, flags, abstract)
            if n > 0, let buffer { tap.feed(UnsafeRawBufferPointer(start: buffer, count: n)) }
            return n
        }
        underlying = vz_ssh2_set_recv(session, tapRecv)
        installedOn = session
    }

    /// Gives libssh2 its own recv back: after the handshake there is nothing left to see, and the
    /// data path should not pay for a detour.
    func remove() {
        if let s = installedOn, let original = underlying { _ = vz_ssh2_set_recv(s, original) }
        installedOn = nil
    }

    private func feed(_ bytes: UnsafeRawBufferPointer) {
        guard kexInit == nil, parseError == nil else { return }
        parser.append(bytes)
        do {
            kexInit = try parser.next()
        } catch let e as VZError {
            parseError = e
        } catch {
            parseError = VZError(.protocolViolation, "\(error)")
        }
    }
}

import VZCore
import VZWire

/// The source's thin driver over `SourceSessionStateMachine`: every send is first checked by the
/// machine, every received message is fed to it, and the driver does what it answers.
extension MessageChannel {
    /// Sends `message` if the session allows it now.
    func send(_ message: Message, in session: inout SourceSessionStateMachine) throws {
        try session.send(message)
        try send(message)
    }

    /// Reads until the session has something to do (keepalives need nothing) and returns that.
    func nextAction(of session: inout SourceSessionStateMachine) throws -> SourceSessionStateMachine.Action {
        while true {
            guard let m = try receive() else {
                try session.receiveEndOfStream()
                throw VZError(.connectionLost, "\(peerName): connection closed after the session ended")
            }
            let action = try session.receive(m)
            if case .ignore = action { continue }
            return action
        }
    }
}

extension SourceSessionStateMachine {
    /// For a driver's `default:`: the machine returned an action that cannot follow what was sent.
    static func unexpected(_ action: Action) -> VZError {
        VZError(.internal, "source: the session answered \(String(describing: action).prefix(120)) where it cannot")
    }
}

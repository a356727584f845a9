import VZCore
import VZWire

/// The target's thin driver over `TargetSessionStateMachine`: every send is first checked by the
/// machine, every received message is fed to it, and the driver does what it answers.
extension MessageChannel {
    /// Sends `message` if the session allows it now.
    func send(_ message: Message, in session: inout TargetSessionStateMachine) throws {
        try session.send(message)
        try send(message)
    }

    /// Reads until the session has something to do (keepalives need nothing) and returns that.
    /// The end of the stream is `.end` after bye, and an error naming what was awaited otherwise.
    func nextAction(of session: inout TargetSessionStateMachine) throws -> TargetSessionStateMachine.Action {
        while true {
            guard let m = try receive() else { return try session.receiveEndOfStream() }
            let action = try session.receive(m)
            if case .ignore = action { continue }
            return action
        }
    }
}

extension TargetSessionStateMachine {
    /// For a driver's `default:`: the machine returned an action that cannot follow what was sent.
    static func unexpected(_ action: Action) -> VZError {
        VZError(.internal, "target: the session answered \(String(describing: action).prefix(120)) where it cannot")
    }
}

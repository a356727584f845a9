import Foundation

/// A thread whose `join()` returns only after the thread has exited. A Foundation `Thread`
/// cannot be joined: a DispatchGroup left at the end of its body is passed while the thread is
/// still tearing down, so a process that then exits (`verify` right after its hash) can run its
/// exit handlers under a live thread and crash. Worker threads that must not outlive their work
/// are these.
public final class JoinableThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false

    /// Starts `body` on a new thread with `stackSize` bytes of stack.
    public init(stackSize: Int = 1 << 20, _ body: @escaping () -> Void) {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, max(stackSize, Int(PTHREAD_STACK_MIN)))
        let box = Unmanaged.passRetained(Body(body)).toOpaque()
        let rc = pthread_create(&thread, &attributes, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box)
        // Out of threads or memory: nothing the caller could do better than stop here.
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Waits until the thread has exited (once; later calls return at once).
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    private final class Body {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
}

import Foundation

/// Runs `transform` on several threads while one producer feeds items in and the caller consumes
/// results in submission order. At most `depth` items are in flight at once, so memory stays
/// bounded whatever the disk size. The source reads -> hashes/compresses -> sends through it;
/// the target receives -> decompresses/verifies -> applies.
///
/// The first error thrown by a worker or the consumer stops the pipeline and is rethrown by `run`;
/// items still in flight are dropped. An error of the producer (say, the connection closed) is
/// an end of input: the items submitted before it are still processed, so an error in one of
/// those — the reason the peer hung up — is the one reported.
///
/// A producer may block outside `submit` (the target's waits in a network read): when the
/// pipeline fails while the producer is still running, `interruptProducer` is called so that it
/// returns at once and the failure is reported now, not whenever the peer next sends something.
public final class OrderedPipeline<Input, Output> {
    private let workers: Int
    private let depth: Int
    private let transform: (Input) throws -> Output

    private let cond = NSCondition()
    private var queue: [(Int, Input)] = []
    private var queueHead = 0
    private var results: [Int: Output] = [:]
    private var inFlight = 0
    private var producedAll = false
    private var submitted = 0
    private var failure: Error?
    private var producerError: Error?

    public init(workers: Int, depth: Int, transform: @escaping (Input) throws -> Output) {
        self.workers = max(1, workers)
        self.depth = max(self.workers + 1, depth)
        self.transform = transform
    }

    /// `produce` is called on its own thread with a `submit` function (which blocks while `depth`
    /// items are in flight); `consume` is called on the calling thread, in order.
    public func run(produce: @escaping (_ submit: (Input) throws -> Void) throws -> Void,
                    consume: (Output) throws -> Void, interruptProducer: (() -> Void)? = nil) throws {
        var threads = [JoinableThread(stackSize: 8 << 20) { [self] in
            do {
                try produce { item in try self.submit(item) }
                cond.lock(); producedAll = true; cond.broadcast(); cond.unlock()
            } catch {
                cond.lock(); producerError = error; producedAll = true; cond.broadcast(); cond.unlock()
            }
        }]
        for _ in 0..<workers {
            threads.append(JoinableThread(stackSize: 1 << 20) { [self] in workerLoop() })
        }
        defer {
            // Stop the threads on any exit path, then join them: none may outlive `run`.
            cond.lock()
            if failure == nil && !(producedAll && inFlight == 0) { failure = CancellationError() }
            let producerRunning = !producedAll
            cond.broadcast()
            cond.unlock()
            if producerRunning { interruptProducer?() }
            for t in threads { t.join() }
        }
        var next = 0
        while true {
            cond.lock()
            while results[next] == nil && failure == nil && !(producedAll && next == submitted) { cond.wait() }
            if let f = failure { cond.unlock(); throw f }
            if producedAll && next == submitted {
                let e = producerError
                cond.unlock()
                if let e { throw e }
                return
            }
            let out = results.removeValue(forKey: next)!
            cond.unlock()
            do {
                try consume(out)
            } catch {
                fail(error)
                throw error
            }
            cond.lock(); inFlight -= 1; cond.broadcast(); cond.unlock()
            next += 1
        }
    }

    private func submit(_ item: Input) throws {
        cond.lock()
        defer { cond.unlock() }
        while inFlight >= depth && failure == nil { cond.wait() }
        if let f = failure { throw f }
        queue.append((submitted, item))
        submitted += 1
        inFlight += 1
        cond.broadcast()
    }

    private func workerLoop() {
        while true {
            cond.lock()
            while queueHead == queue.count && failure == nil && !producedAll { cond.wait() }
            if failure != nil || queueHead == queue.count { cond.unlock(); return }
            let (seq, item) = queue[queueHead]
            queueHead += 1
            if queueHead > 64 && queueHead * 2 > queue.count { queue.removeFirst(queueHead); queueHead = 0 }
            cond.unlock()
            do {
                let out = try transform(item)
                cond.lock(); results[seq] = out; cond.broadcast(); cond.unlock()
            } catch {
                fail(error)
                return
            }
        }
    }

    private func fail(_ error: Error) {
        cond.lock()
        if failure == nil { failure = error }
        cond.broadcast()
        cond.unlock()
    }
}

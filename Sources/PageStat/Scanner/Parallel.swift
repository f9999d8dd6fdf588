import Dispatch
import Synchronization

/// Runs `body` for every index in `0..<count` on `threads` threads, each with a worker of its
/// own (its buffers), and returns the results in index order. The first error stops the rest.
func parallelMap<Worker, T>(count: Int, threads: Int, makeWorker: () -> Worker,
                            _ body: (Worker, Int) throws(PageStatError) -> T) throws(PageStatError) -> [T] {
    if threads <= 1 || count <= 1 {
        let worker = makeWorker()
        var results: [T] = []
        results.reserveCapacity(count)
        for index in 0..<count { results.append(try body(worker, index)) }
        return results
    }
    let results = UnsafeMutableBufferPointer<T?>.allocate(capacity: count)
    results.initialize(repeating: nil)
    defer {
        results.deinitialize()
        results.deallocate()
    }
    let next = Atomic<Int>(0)
    let failure = Mutex<PageStatError?>(nil)
    withoutActuallyEscaping(makeWorker) { makeWorker in
        withoutActuallyEscaping(body) { body in
            // The closures run only while this call waits for them, and each index is written by one thread.
            let shared = UncheckedSendable((makeWorker: makeWorker, body: body, results: results))
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                let (makeWorker, body, results) = shared.value
                let worker = makeWorker()
                while true {
                    let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                    if index >= count || failure.withLock({ $0 != nil }) { return }
                    do throws(PageStatError) {
                        results[index] = try body(worker, index)
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                        return
                    }
                }
            }
        }
    }
    if let error = failure.withLock({ $0 }) { throw error }
    return results.map { $0! }
}

/// Hands a value to threads that the compiler cannot see are confined to one call.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

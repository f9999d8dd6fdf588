#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time (clock_gettime(CLOCK_MONOTONIC)): the one clock of the package, for the
/// scanner's phase timings, `bench`, progress lines and the exporter's scrape cache. Internal to
/// the package: the public API keeps no time.
package enum Stopwatch {
    /// Nanoseconds on the monotonic clock.
    package static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Seconds on the monotonic clock, for intervals.
    package static func nowSeconds() -> Double { Double(now()) / 1e9 }

    /// Seconds that `body` took.
    package static func seconds<E: Error>(_ body: () throws(E) -> Void) throws(E) -> Double {
        let start = now()
        try body()
        return Double(now() - start) / 1e9
    }

    /// The median of `values`.
    package static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time (clock_gettime(CLOCK_MONOTONIC)), for the scanner's phase timings and `bench`.
public enum Stopwatch {
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Seconds that `body` took.
    public static func seconds<E: Error>(_ body: () throws(E) -> Void) throws(E) -> Double {
        let start = now()
        try body()
        return Double(now() - start) / 1e9
    }

    /// The median of `values`.
    public static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return .nan }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

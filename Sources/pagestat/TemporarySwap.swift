import CPagestat
import PageStat
import PageStatRender

#if canImport(Glibc)
import Glibc
#endif

/// The temporary swap file a command turned on, for the signal handler to remove.
nonisolated(unsafe) private var temporarySwapPath: UnsafeMutablePointer<CChar>?

/// Swap for commands that page memory out (`demo`, `doctor --verify`): what is on, or, as root
/// with none on, a temporary swap file, removed at exit and on SIGINT, SIGTERM and SIGHUP.
enum TemporarySwap {
    /// Makes sure swap is on, and says which through `say` (standard output by default).
    static func ensure(directory: String, bytes: UInt64, say: (String) -> Void = writeOut) throws(PageStatError) {
        let active = SwapArea.active()
        if !active.isEmpty {
            say("Swap: using \(active.map { escapedName($0.path) }.joined(separator: ", ")).\n\n")
            return
        }
        guard geteuid() == 0 else {
            throw .unsupported("swap is off, and pages cannot be swapped out without it. Turn swap on (swapon), or run this as root and it will turn on a temporary swap file")
        }
        let path = "\(directory)/pagestat-\(getpid()).swap"
        try SwapArea.enableFile(at: path, bytes: bytes)
        temporarySwapPath = strdup(path)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            // Async-signal-safe: two system calls on a C string made before, then _exit; no
            // allocation, no Swift strings, no free.
            signal(sig) { signo in
                if let path = temporarySwapPath {
                    _ = CPagestat_swapoff(path)
                    _ = unlink(path)
                }
                _exit(128 + signo)
            }
        }
        say("Swap: none was on; turned on a temporary \(humanBytes(bytes)) swap file \(path) (removed at exit).\n\n")
    }

    /// Turns off and removes the temporary swap file, if one was turned on.
    static func remove() {
        guard let path = temporarySwapPath else { return }
        SwapArea.disableFile(at: String(cString: path))
        free(path)
        temporarySwapPath = nil
    }
}

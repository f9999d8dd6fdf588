#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// Calls `body` until it does not fail with EINTR; -1 becomes the typed errno.
@inline(__always)
func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let value = body()
        if value != -1 { return .success(value) }
        let error = Errno(rawValue: errno)
        if error != .interrupted { return .failure(error) }
    }
}

/// Runs a swift-system call (which throws untyped) and hands back its `Errno`, typed.
@inline(__always)
func system<T>(_ body: () throws -> T) throws(Errno) -> T {
    do {
        return try body()
    } catch let error as Errno {
        throw error
    } catch {
        throw Errno.ioError
    }
}

extension ProcFS {
    /// Whether a failed call on a file of `/proc/PID` means the process has exited: ESRCH from
    /// the call, or `/proc/PID` no longer there. The one "did it exit" check of the readers that
    /// know the process by its pid (a `ProcessHandle` asks its pidfd instead).
    static func exited(_ pid: Int32, failedWith error: Errno? = nil) -> Bool {
        error == .noSuchProcess || !processExists(pid)
    }
}

extension PageStatError {
    /// Turns a failed call on `/proc/PID/...` into the error a user should see.
    static func fromProc(_ error: Errno, pid: Int32, call: String, what: String) -> PageStatError {
        switch error {
        case .noSuchProcess:
            // ESRCH while /proc/PID is still there: the task has no mm.
            return ProcFS.processExists(pid) ? .noAddressSpace(pid: pid) : .noSuchProcess(pid: pid)
        case .noSuchFileOrDirectory:
            return ProcFS.processExists(pid) ? .system(call: call, errno: error) : .noSuchProcess(pid: pid)
        case .permissionDenied, .notPermitted:
            return .permissionDenied(what: what)
        default:
            return .system(call: call, errno: error)
        }
    }
}


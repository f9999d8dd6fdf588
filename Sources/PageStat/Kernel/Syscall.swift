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
package func system<T>(_ body: () throws -> T) throws(Errno) -> T {
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
            return .permissionDenied(.procFile(what))
        default:
            return .system(call: call, errno: error)
        }
    }
}


extension FileDescriptor {
    /// open(2) of `path` through swift-system, its bytes as they stand (no `FilePath`
    /// normalisation), retried on EINTR; the errno typed.
    package static func open(path: String, _ mode: AccessMode, options: OpenOptions,
                     permissions: FilePermissions? = nil) throws(Errno) -> FileDescriptor {
        try system { try path.withCString { try FileDescriptor.open($0, mode, options: options, permissions: permissions) } }
    }

    /// openat(2) of `name` relative to the directory `directory`, retried on EINTR; the errno
    /// typed. swift-system (1.8) has no openat: this is the one place pagestat calls it.
    static func open(_ name: String, relativeTo directory: FileDescriptor, _ mode: AccessMode,
                     options: OpenOptions) throws(Errno) -> FileDescriptor {
        let flags = mode.rawValue | options.rawValue
        return FileDescriptor(rawValue: try retryingInterrupts { openat(directory.rawValue, name, flags) }.get())
    }

    /// The whole of an open /proc file from its start to EOF, in large preads (/proc files
    /// report size 0; a seq_file read again from offset 0 starts over). The buffer is not zeroed
    /// first: a small file (a 300-byte stat) then touches one page of it, not sixteen.
    func readToEnd() throws(Errno) -> [UInt8] {
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        while true {
            if filled == buffer.count {
                let larger = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count * 2, alignment: 16)
                larger.copyMemory(from: UnsafeRawBufferPointer(buffer))
                buffer.deallocate()
                buffer = larger
            }
            let count = try system { [buffer, filled] in
                try read(fromAbsoluteOffset: Int64(filled), into: UnsafeMutableRawBufferPointer(rebasing: buffer[filled...]))
            }
            if count == 0 { return Array(UnsafeRawBufferPointer(rebasing: buffer[..<filled])) }
            filled += count
        }
    }

    /// fstat(2) through swift-system: the C struct, or nil when the call fails.
    var status: stat? { try? stat().rawValue }
}

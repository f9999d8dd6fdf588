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

extension PageStatError {
    /// Turns a failed call on `/proc/PID/...` into the error a user should see.
    static func fromProc(_ error: Errno, pid: Int32, call: String, what: String) -> PageStatError {
        switch error {
        case .noSuchProcess, .noSuchFileOrDirectory:
            return ProcFS.processExists(pid) ? .system(call: call, errno: error) : .noSuchProcess(pid: pid)
        case .permissionDenied, .notPermitted:
            return .permissionDenied(what: what)
        default:
            return .system(call: call, errno: error)
        }
    }
}

/// Small facts about processes and this process's privilege, from /proc.
public enum ProcFS {
    /// Whether /proc/PID exists (the process has not been reaped).
    public static func processExists(_ pid: Int32) -> Bool {
        access("/proc/\(pid)", F_OK) == 0
    }

    /// The whole of a /proc file as text. /proc files report size 0, so read until EOF.
    public static func readText(_ path: String, pid: Int32, what: String) throws(PageStatError) -> String {
        let fd: FileDescriptor
        do {
            fd = try system { try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) }
        } catch {
            throw .fromProc(error, pid: pid, call: "open \(path)", what: what)
        }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count: Int
            do {
                count = try system { try chunk.withUnsafeMutableBytes { try fd.read(into: $0, retryOnInterrupt: true) } }
            } catch {
                throw .fromProc(error, pid: pid, call: "read \(path)", what: what)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether this process has CAP_SYS_ADMIN in its effective set (bit 21 of CapEff), which
    /// pagemap needs to give PFNs and swap locations and map_files needs to open objects.
    public static func hasSysAdmin() -> Bool {
        guard let status = try? readText("/proc/self/status", pid: getpid(), what: "/proc/self/status") else {
            return false
        }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).drop(while: { $0 == " " || $0 == "\t" })
            guard let caps = UInt64(hex, radix: 16) else { return false }
            return caps & (1 << 21) != 0
        }
        return false
    }

    /// The system page size.
    public static let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))
}

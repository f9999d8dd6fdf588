#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import SystemPackage

/// Small facts about processes and this process's privilege, from /proc.
public enum ProcFS {
    /// Whether /proc/PID exists (the process has not been reaped).
    public static func processExists(_ pid: Int32) -> Bool {
        access("/proc/\(pid)", F_OK) == 0
    }

    /// The whole of a /proc file as text. /proc files report size 0, so read until EOF.
    public static func readText(_ path: String, pid: Int32, what: String) throws(PageStatError) -> String {
        String(decoding: try readBytes(path, pid: pid, what: what), as: UTF8.self)
    }

    /// The whole of a /proc file as bytes, read in large chunks until EOF.
    public static func readBytes(_ path: String, pid: Int32, what: String) throws(PageStatError) -> [UInt8] {
        let fd: FileDescriptor
        do {
            fd = try system { try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) }
        } catch {
            throw .fromProc(error, pid: pid, call: "open \(path)", what: what)
        }
        defer { try? fd.close() }
        do {
            return try readAll(fd: fd.rawValue)
        } catch {
            throw .fromProc(error, pid: pid, call: "read \(path)", what: what)
        }
    }

    /// An open /proc file from its start to EOF, in large preads (/proc files report size 0; a
    /// seq_file read again from offset 0 starts over).
    static func readAll(fd: Int32) throws(Errno) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 1 << 16)
        var filled = 0
        while true {
            if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: bytes.count)) }
            let result = bytes.withUnsafeMutableBytes { buffer in
                retryingInterrupts { pread(fd, buffer.baseAddress! + filled, buffer.count - filled, off_t(filled)) }
            }
            switch result {
            case .success(let count):
                if count == 0 {
                    bytes.removeSubrange(filled...)
                    return bytes
                }
                filled += count
            case .failure(let error):
                throw error
            }
        }
    }

    /// tmpfs devices as the process sees its mounts (/proc/PID/mountinfo, see `MountTable`).
    static func shmemDevices(pid: Int32) -> Set<ProcMaps.Device> { MountTable.devices(pid: pid).shmem }

    /// readlink(2) of a /proc link.
    static func readLink(_ path: String) throws(PageStatError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { throw .system(call: "readlink \(path)", errno: Errno(rawValue: errno)) }
        return buffer[0..<count].withUnsafeBufferPointer { String(decoding: UnsafeRawBufferPointer($0), as: UTF8.self) }
    }

    /// Whether this process has CAP_SYS_ADMIN in its effective set (bit 21 of CapEff), which
    /// pagemap needs to give PFNs and swap locations and map_files needs to open objects.
    public static func hasSysAdmin() -> Bool { sysAdmin }

    private static let sysAdmin: Bool = {
        guard let status = try? readText("/proc/self/status", pid: getpid(), what: "/proc/self/status") else {
            return false
        }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            let hex = line.dropFirst("CapEff:".count).drop(while: { $0 == " " || $0 == "\t" })
            guard let caps = UInt64(hex, radix: 16) else { return false }
            return caps & (1 << 21) != 0
        }
        return false
    }()

    /// The system page size.
    public static let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Every process on the machine: the numeric entries of /proc, in order.
    public static func pids() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = Int32(name), pid > 0 { pids.append(pid) }
        }
        return pids.sorted()
    }

    /// The command name of a process (/proc/PID/comm), or nil when it is gone.
    public static func command(_ pid: Int32) -> String? {
        guard let bytes = try? readBytes("/proc/\(pid)/comm", pid: pid, what: "comm") else { return nil }
        return NameBytes.decode(bytes.last == 0x0a ? Array(bytes.dropLast()) : bytes)
    }

    /// The open descriptors of a process: (fd number, link target), from /proc/PID/fd.
    public static func openFiles(_ pid: Int32) -> [(fd: Int32, target: String)] {
        guard let dir = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(dir) }
        var files: [(Int32, String)] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let fd = Int32(name) else { continue }
            let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
            guard count > 0 else { continue }
            let target = buffer[0..<count].withUnsafeBufferPointer { $0.withMemoryRebound(to: UInt8.self) { NameBytes.decode($0) } }
            files.append((fd, target))
        }
        return files
    }
}

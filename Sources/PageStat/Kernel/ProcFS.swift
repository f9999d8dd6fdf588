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
            fd = try FileDescriptor.open(path: path, .readOnly, options: [.closeOnExec])
        } catch {
            throw .fromProc(error, pid: pid, call: "open \(path)", what: what)
        }
        defer { try? fd.close() }
        do {
            return try fd.readToEnd()
        } catch {
            throw .fromProc(error, pid: pid, call: "read \(path)", what: what)
        }
    }

    /// tmpfs devices as the process sees its mounts (/proc/PID/mountinfo, see `MountTable`).
    static func shmemDevices(pid: Int32) -> Set<ProcMaps.Device> { MountTable.devices(pid: pid).shmem }

    /// readlink(2) of a /proc link: its target by its exact bytes (`NameBytes`).
    static func readLink(_ path: String) throws(PageStatError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { throw .system(call: "readlink \(path)", errno: Errno(rawValue: errno)) }
        return buffer[0..<count].withUnsafeBufferPointer { $0.withMemoryRebound(to: UInt8.self) { NameBytes.decode($0) } }
    }

    /// Whether the kernel gives this process what CAP_SYS_ADMIN brings: PFNs and swap locations
    /// in pagemap, and objects opened through map_files. Tested, not read off a capability bit
    /// (a user namespace, a seccomp filter or a future kernel may disagree with CapEff): a page
    /// of our own, written, must read back from /proc/self/pagemap with a non-zero PFN, and its
    /// /proc/self/map_files entry must open.
    public static func hasSysAdmin() -> Bool { sysAdmin }

    private static let sysAdmin: Bool = {
        let length = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let page = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
              page != MAP_FAILED else { return false }
        defer { munmap(page, length) }
        page.storeBytes(of: 1, as: UInt8.self)
        guard let entry = Pagemap.ownEntry(page), entry.isPresent && entry.pfn != 0 else { return false }
        let address = UInt(bitPattern: page)
        guard let object = try? FileDescriptor.open(
            path: "/proc/self/map_files/\(String(address, radix: 16))-\(String(address + UInt(length), radix: 16))",
            .readOnly, options: [.closeOnExec]) else { return false }
        try? object.close()
        return true
    }()

    /// The system page size.
    public static let pageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Every process on the machine: the numeric entries of /proc, in order.
    public static func pids() -> [Int32] {
        (Directory.names("/proc") ?? []).compactMap { name in Int32(name).flatMap { $0 > 0 ? $0 : nil } }.sorted()
    }

    /// The command name of a process (/proc/PID/comm), or nil when it is gone.
    public static func command(_ pid: Int32) -> String? {
        guard let bytes = try? readBytes("/proc/\(pid)/comm", pid: pid, what: "comm") else { return nil }
        return NameBytes.decode(bytes.last == 0x0a ? Array(bytes.dropLast()) : bytes)
    }

    /// The open descriptors of a process: (fd number, link target), from /proc/PID/fd.
    package static func openFiles(_ pid: Int32) -> [(fd: Int32, target: String)] {
        (Directory.names("/proc/\(pid)/fd") ?? []).compactMap { name in
            guard let fd = Int32(name), let target = linkTarget("/proc/\(pid)/fd/\(fd)") else { return nil }
            return (fd, target)
        }
    }

    /// Where a symbolic link points (`readLink`); nil where it cannot be read.
    static func linkTarget(_ path: String) -> String? { try? readLink(path) }
}

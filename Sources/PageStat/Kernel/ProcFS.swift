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
    /// seq_file read again from offset 0 starts over). The buffer is not zeroed first: a small
    /// file (a 300-byte stat) then touches one page of it, not sixteen.
    static func readAll(fd: Int32) throws(Errno) -> [UInt8] {
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
            let result = retryingInterrupts { pread(fd, buffer.baseAddress! + filled, buffer.count - filled, off_t(filled)) }
            switch result {
            case .success(let count):
                if count == 0 { return Array(UnsafeRawBufferPointer(rebasing: buffer[..<filled])) }
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
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var entry: UInt64 = 0
        let address = UInt(bitPattern: page)
        guard pread(fd, &entry, 8, off_t(address / UInt(length) * 8)) == 8 else { return false }
        let decoded = PagemapEntry(rawValue: entry)
        guard decoded.isPresent && decoded.pfn != 0 else { return false }
        let object = open("/proc/self/map_files/\(String(address, radix: 16))-\(String(address + UInt(length), radix: 16))",
                          O_RDONLY | O_CLOEXEC)
        guard object >= 0 else { return false }
        close(object)
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
    public static func openFiles(_ pid: Int32) -> [(fd: Int32, target: String)] {
        var files: [(Int32, String)] = []
        var buffer = [CChar](repeating: 0, count: 4096)
        for name in Directory.names("/proc/\(pid)/fd") ?? [] {
            guard let fd = Int32(name) else { continue }
            let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
            guard count > 0 else { continue }
            let target = buffer[0..<count].withUnsafeBufferPointer { $0.withMemoryRebound(to: UInt8.self) { NameBytes.decode($0) } }
            files.append((fd, target))
        }
        return files
    }
}

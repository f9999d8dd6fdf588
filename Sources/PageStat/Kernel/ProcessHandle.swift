#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// One inspected process, pinned: a pidfd (pidfd_open(2), Linux 5.3+) and a descriptor of its
/// `/proc/PID` directory, both opened once. Every file of the process is opened relative to the
/// directory (openat(2)), so a pid reused by another process is never read by mistake: once the
/// process is reaped, reads through the directory fail with ESRCH.
///
/// Descriptors of `/proc/PID/maps` and `/proc/PID/pagemap` hold the address space (the mm) that
/// the process had when they were opened. After an exec they read nothing; after a vfork
/// child's exec they go on reading the parent's. `identity()` tells a switch to another
/// layout; `addressSpaceSharers()` and kcmp(2) tell one that the exec kept equal (the same
/// program, ASLR off).
public final class ProcessHandle: Sendable {
    /// The process id it was opened for.
    public let pid: Int32
    /// pidfd_open(2); nil where the kernel lacks it or the pid is not a thread-group leader.
    private let pidfd: FileDescriptor?
    /// `/proc/PID`, O_DIRECTORY.
    private let directory: FileDescriptor

    /// Opens the pidfd, then `/proc/PID`, then checks through the pidfd that the process did not
    /// exit in between (so the directory is this process's, not a successor's).
    public init(pid: Int32) throws(PageStatError) {
        guard pid > 0 else { throw .invalidInput("invalid pid \(pid): expected a positive process id") }
        self.pid = pid
        let pidfd = CPagestat_pidfd_open(pid)
        self.pidfd = pidfd >= 0 ? FileDescriptor(rawValue: pidfd) : nil
        do {
            directory = try FileDescriptor.open(path: "/proc/\(pid)", .readOnly, options: [.directory, .closeOnExec])
        } catch {
            try? self.pidfd?.close()
            if error == .noSuchFileOrDirectory || error == .noSuchProcess { throw .noSuchProcess(pid: pid) }
            throw .system(call: "open /proc/\(pid)", errno: error)
        }
        if let pidfd = self.pidfd, Self.readable(pidfd) {
            // It exited before /proc/PID was opened: a zombie (its memory is gone), or reaped and
            // its number reused by another process.
            let zombie = (try? readBytes("stat")).map(ProcStat.isZombie) == true
            try? pidfd.close()
            try? directory.close()
            throw zombie ? .noAddressSpace(pid: pid) : .noSuchProcess(pid: pid)
        }
    }

    deinit {
        try? pidfd?.close()
        try? directory.close()
    }

    /// Whether the process has exited (a zombie counts): the pidfd polls readable, or, without
    /// a pidfd, `/proc/PID/stat` is gone or says Z or X.
    public var hasExited: Bool {
        if let pidfd { return Self.readable(pidfd) }
        guard let stat = try? readBytes("stat") else { return true }
        return ProcStat.isZombie(stat)
    }

    private static func readable(_ fd: FileDescriptor) -> Bool {
        var poller = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) > 0 && poller.revents & Int16(POLLIN) != 0
    }

    /// openat(2) of a file of the process, read-only; the errno mapped to what a user should see.
    package func open(_ name: String, what: String) throws(PageStatError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(name, relativeTo: directory, .readOnly, options: [.closeOnExec])
        } catch {
            throw self.error(error, call: "open /proc/\(pid)/\(name)", what: what)
        }
    }

    /// openat(2) of a file of the process with `options` (O_PATH, say), read-only; the errno as is.
    package func openRelative(_ name: String, options: FileDescriptor.OpenOptions) throws(Errno) -> FileDescriptor {
        try FileDescriptor.open(name, relativeTo: directory, .readOnly, options: options)
    }

    /// The whole of a file of the process, read until EOF (/proc files report size 0).
    public func readBytes(_ name: String, what: String? = nil) throws(PageStatError) -> [UInt8] {
        let fd = try open(name, what: what ?? "/proc/\(pid)/\(name)")
        defer { try? fd.close() }
        return try readAll(fd, name: name, what: what ?? "/proc/\(pid)/\(name)")
    }

    /// Reads an open file of the process from its start to EOF; the same descriptor can be read
    /// again (seq_file starts over at offset 0).
    package func readAll(_ fd: FileDescriptor, name: String, what: String) throws(PageStatError) -> [UInt8] {
        do {
            return try fd.readToEnd()
        } catch {
            throw self.error(error, call: "read /proc/\(pid)/\(name)", what: what)
        }
    }

    /// What a failed call on a file of this process means for the user.
    func error(_ error: Errno, call: String, what: String) -> PageStatError {
        switch error {
        case .noSuchProcess, .noSuchFileOrDirectory:
            if hasExited { return .processExited(pid: pid) }
            // ESRCH from a live process: it has no mm (a kernel thread).
            return error == .noSuchProcess ? .noAddressSpace(pid: pid) : .system(call: call, errno: error)
        case .permissionDenied, .notPermitted:
            return .permissionDenied(.procFile(what))
        default:
            return .system(call: call, errno: error)
        }
    }

    /// The address space's fingerprint from `/proc/PID/stat`: where the kernel placed code,
    /// data, stack, heap start, arguments and environment (fields 26-28 and 45-51). An exec
    /// replaces every one of them (and ASLR moves them even for the same program); they never
    /// change otherwise. Nil when the kernel hides them (no ptrace read access) or there is no
    /// address space.
    public func identity() throws(PageStatError) -> AddressSpaceIdentity? {
        try AddressSpaceIdentity(stat: readBytes("stat"))
    }

    /// Throws what became of the process if it no longer has the address space `expected` (its
    /// fingerprint when the views were opened): it exited, or it executed a new program. Where
    /// the address space was shared with other processes (`expected.sharers`), it must still be
    /// shared with each of them that lives: an exec replaces the mm, whatever the new layout.
    package func checkAddressSpace(_ expected: AddressSpaceIdentity?) throws(PageStatError) {
        if hasExited { throw .processExited(pid: pid) }
        let now: AddressSpaceIdentity?
        do { now = try identity() } catch { throw hasExited ? .processExited(pid: pid) : error }
        if now?.values != expected?.values { throw .addressSpaceReplaced(pid: pid) }
        for sharer in expected?.sharers ?? [] where sharesAddressSpace(with: sharer) == false {
            throw hasExited ? .processExited(pid: pid) : .addressSpaceReplaced(pid: pid)
        }
    }

    /// Whether `other` has this process's address space (mm), by kcmp(2) KCMP_VM; nil where
    /// kcmp cannot tell (either process gone, no ptrace read access, a kernel without
    /// CONFIG_KCMP).
    package func sharesAddressSpace(with other: Int32) -> Bool? {
        let order = CPagestat_kcmp_vm(other, pid)
        return order < 0 ? nil : order == 0
    }

    /// The other processes (not threads of this one) that share its address space: clone(2)
    /// with CLONE_VM and without CLONE_THREAD, as a vfork child shares its parent's until it
    /// execs. The pinned descriptors keep such an address space alive after this process
    /// replaced its own, so only kcmp(2) against a sharer tells the replacement when the new
    /// layout is the old one (the same program, ASLR off). Looks at the parent (field 4 of
    /// /proc/PID/stat) and the children (/proc/PID/task/PID/children, CONFIG_PROC_CHILDREN).
    package func addressSpaceSharers() -> [Int32] {
        var candidates: [Int32] = []
        if let stat = try? readBytes("stat"), let parent = ProcStat.parentPID(stat) { candidates.append(parent) }
        if let children = try? readBytes("task/\(pid)/children") {
            for child in children.split(whereSeparator: { $0 == 0x20 || $0 == 0x0a }) {
                if let value = ASCIINumber.parse(child), value > 0, value <= UInt64(Int32.max) { candidates.append(Int32(value)) }
            }
        }
        return candidates.filter { sharesAddressSpace(with: $0) == true }
    }

    /// What became of an address space that a read found gone (the descriptors read nothing):
    /// the process exited, or replaced it with exec.
    package func vanished(from expected: AddressSpaceIdentity?) -> PageStatError {
        do { try checkAddressSpace(expected) } catch { return error }
        return .addressSpaceReplaced(pid: pid)
    }
}

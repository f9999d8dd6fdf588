import SystemPackage

/// Everything that can stop a scan, each with one clear line for the user.
public enum PageStatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// /proc/PID does not exist.
    case noSuchProcess(pid: Int32)
    /// The kernel refused to let us read something (ptrace access, map_files, root-only files).
    case permissionDenied(Denial)
    /// The requested range overlaps no mapping of the process.
    case rangeNotMapped(pid: Int32, range: AddressRange)
    /// The process went away while it was being scanned.
    case processExited(pid: Int32)
    /// The process replaced its address space while it was being scanned (exec, or the exec of
    /// a vfork child that shared its parent's): what was read belongs to no current process.
    case addressSpaceReplaced(pid: Int32)
    /// A mapping being read was replaced by another (munmap and mmap, or MAP_FIXED over it)
    /// while it was read: what follows would be the other mapping's pages.
    case mappingReplaced(pid: Int32, detail: String)
    /// The process exists but has no user address space: a kernel thread or a zombie.
    case noAddressSpace(pid: Int32)
    /// The running kernel lacks an interface that this operation needs.
    case unsupported(String)
    /// The object behind a mapping or path is not the one maps named (device and inode): the
    /// mapping or the path changed while it was being read.
    case objectChanged(String)
    /// Bad input from the user: an invalid range, an unknown flag name.
    case invalidInput(String)
    /// A system call failed for another reason.
    case system(call: String, errno: Errno)
    /// The slots of the swap area at `area` cannot be read correctly from its backend.
    case swapAreaRefused(area: String, refusal: SwapRefusal)

    public var description: String {
        switch self {
        case .noSuchProcess(let pid): "no such process: \(pid)"
        case .permissionDenied(let denial): "permission denied: \(denial)"
        case .rangeNotMapped(let pid, let range): "range \(range) is not mapped in process \(pid)"
        case .processExited(let pid): "process \(pid) exited during the scan"
        case .addressSpaceReplaced(let pid): "process \(pid) executed a new program during the scan (its address space was replaced); scan it again"
        case .mappingReplaced(let pid, let detail): "process \(pid) replaced a mapping during the scan: \(detail)"
        case .noAddressSpace(let pid): "process \(pid) has no user address space (a kernel thread or a zombie)"
        case .unsupported(let what): "not supported by this kernel: \(what)"
        case .objectChanged(let message): "object changed: \(message)"
        case .invalidInput(let message): message
        case .system(let call, let errno): "\(call): \(errno)"
        case .swapAreaRefused(let area, let refusal): "swap area \(area) cannot be read from its slots: \(refusal)"
        }
    }

    /// The errno of a failed system call (`system`), nil for the other cases.
    public var errno: Errno? {
        if case .system(_, let errno) = self { return errno }
        return nil
    }

    /// What the kernel refused (EACCES or EPERM), each with the words pagestat prints.
    public enum Denial: Sendable, Hashable, CustomStringConvertible {
        /// A file of /proc (most need ptrace read access to the process): the file, as the user
        /// should read it (`/proc/42/maps (needs ptrace read access)`).
        case procFile(String)
        /// A file only root may read (/proc/kpageflags, /proc/kpagecount, /proc/kpagecgroup).
        case rootOnly(path: String)
        /// cachestat(2) of a file the caller neither owns nor may write (Linux 6.15+).
        case cachestat
        /// The page-cache residency of the object behind a mapping: /proc/PID/map_files would
        /// not open (it needs CAP_SYS_ADMIN), or the object was opened without it.
        case residency
        /// mincore(2) of a file the caller neither owns nor may write: it would call every page
        /// resident.
        case pageCacheOfUnwritableFile
        /// A file or directory the user named.
        case path(String)
        /// The cgroup filesystem is not writable at this path.
        case cgroupFilesystem(path: String)
        /// An operation that needs root, and why.
        case needsRoot(String)

        public var description: String {
            switch self {
            case .procFile(let what): what
            case .rootOnly(let path): "\(path) (root only)"
            case .cachestat: "cachestat(2) needs write access to or ownership of the file"
            case .residency: "residency"
            case .pageCacheOfUnwritableFile: "the page cache of a file we neither own nor may write (mincore would call every page resident)"
            case .path(let path): path
            case .cgroupFilesystem(let path): "\(path): the cgroup filesystem is not writable (run as root, with a writable /sys/fs/cgroup)"
            case .needsRoot(let why): why
            }
        }
    }
}

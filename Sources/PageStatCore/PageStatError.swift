import SystemPackage

/// Everything that can stop a scan, each with one clear line for the user.
public enum PageStatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// /proc/PID does not exist.
    case noSuchProcess(pid: Int32)
    /// The kernel refused to let us read something (ptrace access, map_files, root-only files).
    case permissionDenied(what: String)
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
        case .permissionDenied(let what): "permission denied: \(what)"
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
}

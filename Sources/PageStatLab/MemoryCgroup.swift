import PageStat
#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// A memory cgroup that a process makes for itself and moves into, so that the kernel reclaims
/// its memory to swap once it uses more than a limit: what the 2021 kernel thread's test did with
/// `cgexec -g memory:foo` after `echo 512K > foo/memory.limit_in_bytes`.
///
/// The kernel files underneath (Documentation/admin-guide/cgroup-v1/memory.rst and
/// Documentation/admin-guide/cgroup-v2.rst):
/// - `/proc/self/mountinfo`: where the hierarchy is mounted, a `cgroup` filesystem with the
///   `memory` option (v1) or a `cgroup2` one whose `cgroup.controllers` lists `memory` (v2);
/// - `/proc/self/cgroup`: the cgroup this process is in now, to go back to;
/// - v1: `memory.limit_in_bytes` (the limit) and `memory.swappiness` (0-200; 0 keeps anonymous and
///   shared memory out of swap);
/// - v2: `memory.max` (the limit) and `memory.swap.max` (set to `max`); v2 has no per-cgroup
///   swappiness;
/// - `cgroup.procs`: writing a pid there moves that whole process (every thread). Memory already
///   charged stays charged where it was: only pages touched after the move count against the limit.
///
/// `remove()` moves the process back and removes the directory (rmdir); call it on every way
/// out. A process killed with SIGKILL leaves the directory behind: remove it with `rmdir`.
package final class MemoryCgroup {
    package enum Version: String, Sendable { case v1, v2 }

    /// A mounted hierarchy with the memory controller, and where this process sits in it.
    package struct Hierarchy: Sendable, Equatable {
        package var version: Version
        /// The mount point, e.g. /sys/fs/cgroup/memory (v1) or /sys/fs/cgroup (v2).
        package var mountPoint: String
        /// This process's cgroup, relative to the mount point ("/" for the root).
        package var current: String
    }

    package let hierarchy: Hierarchy
    /// The directory this made: `<mount point>/<name>`.
    package let path: String
    private var entered = false
    private var removed = false

    private init(hierarchy: Hierarchy, path: String) {
        self.hierarchy = hierarchy
        self.path = path
    }

    deinit { _ = remove() }

    // MARK: finding the hierarchy (pure)

    /// The memory hierarchy to use, from /proc/self/mountinfo and /proc/self/cgroup text: a v1
    /// `memory` hierarchy when one is mounted (hybrid systems keep the controller there), else the
    /// v2 hierarchy (whether its memory controller is on is checked when the cgroup is made).
    ///
    /// mountinfo escapes a space, tab, newline or backslash in a path as `\ooo`; the mount point
    /// comes back unescaped. A mount may show a subtree of its hierarchy (its ROOT field, as in a
    /// container without a cgroup namespace); `current` is then relative to that subtree.
    package static func locate(mountinfo: String, selfCgroup: String) -> Hierarchy? {
        var v1: (root: String, mountPoint: String)?
        var v2: (root: String, mountPoint: String)?
        for mount in MountInfo.parse(mountinfo) {
            let found = (root: mount.root, mountPoint: mount.mountPoint)
            switch mount.fileSystemType {
            case "cgroup" where mount.superOptions.contains("memory"):
                v1 = v1 ?? found
            case "cgroup2":
                v2 = v2 ?? found
            default: continue
            }
        }
        // /proc/self/cgroup lines: `ID:CONTROLLERS:PATH`; v2's line is `0::PATH`.
        func current(under root: String, where match: (Substring) -> Bool) -> String {
            for line in selfCgroup.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard parts.count == 3 && match(parts[1]) else { continue }
                let path = String(parts[2])
                guard root != "/" else { return path }
                if path == root { return "/" }
                return path.hasPrefix(root + "/") ? String(path.dropFirst(root.count)) : path
            }
            return "/"
        }
        if let v1 {
            return Hierarchy(version: .v1, mountPoint: v1.mountPoint,
                             current: current(under: v1.root) { $0.split(separator: ",").contains("memory") })
        }
        if let v2 {
            return Hierarchy(version: .v2, mountPoint: v2.mountPoint, current: current(under: v2.root) { $0.isEmpty })
        }
        return nil
    }

    /// The hierarchy of this machine, as this process sees it.
    package static func locate() throws(PageStatError) -> Hierarchy {
        let pid = getpid()
        let mountinfo = try ProcFS.readText("/proc/self/mountinfo", pid: pid, what: "/proc/self/mountinfo")
        let cgroup = try ProcFS.readText("/proc/self/cgroup", pid: pid, what: "/proc/self/cgroup")
        guard let hierarchy = locate(mountinfo: mountinfo, selfCgroup: cgroup) else {
            throw .unsupported("no memory cgroup: neither a cgroup v1 hierarchy with the memory controller nor cgroup v2 is mounted")
        }
        return hierarchy
    }

    // MARK: making, entering, removing

    /// Makes `<mount point>/<name>` with a memory limit of `limit` bytes and, on v1, `swappiness`
    /// (nil leaves the inherited value). Nothing is left behind when it fails.
    package static func create(name: String, limit: UInt64, swappiness: Int?) throws(PageStatError) -> MemoryCgroup {
        let hierarchy = try locate()
        if hierarchy.version == .v2 && swappiness != nil {
            throw .invalidInput("--swappiness needs the cgroup v1 memory controller: cgroup v2 has no per-cgroup swappiness")
        }
        let path = hierarchy.mountPoint + "/" + name
        try makeDirectory(path)
        let cgroup = MemoryCgroup(hierarchy: hierarchy, path: path)
        // From here on, a failure removes the directory (deinit).
        switch hierarchy.version {
        case .v1:
            try writeFile(path + "/memory.limit_in_bytes", String(limit))
            if let swappiness { try writeFile(path + "/memory.swappiness", String(swappiness)) }
        case .v2:
            guard access(path + "/memory.max", F_OK) == 0 else {
                throw .unsupported("the cgroup v2 memory controller is not enabled for the children of \(hierarchy.mountPoint) (its cgroup.subtree_control lacks memory)")
            }
            try writeFile(path + "/memory.max", String(limit))
            if access(path + "/memory.swap.max", F_OK) == 0 { try writeFile(path + "/memory.swap.max", "max") }
        }
        return cgroup
    }

    /// Moves this process into the cgroup (its pid to `cgroup.procs`).
    package func enter() throws(PageStatError) {
        try Self.writeFile(path + "/cgroup.procs", String(getpid()))
        entered = true
    }

    /// Moves this process back to the cgroup it came from (or, if that is gone, to the root of the
    /// hierarchy) and removes the directory. Safe to call more than once; returns what failed.
    @discardableResult
    package func remove() -> PageStatError? {
        guard !removed else { return nil }
        removed = true
        if entered {
            let home = hierarchy.mountPoint + (hierarchy.current == "/" ? "" : hierarchy.current)
            do {
                try Self.writeFile(home + "/cgroup.procs", String(getpid()))
            } catch {
                do { try Self.writeFile(hierarchy.mountPoint + "/cgroup.procs", String(getpid())) } catch { return error }
            }
            entered = false
        }
        // The kernel may need a moment to see the process gone from the cgroup.
        for _ in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { return nil }
            guard errno == EBUSY else { break }
            usleep(10_000)
        }
        return Self.failure("rmdir", path, errno)
    }

    // MARK: file helpers

    private static func makeDirectory(_ path: String) throws(PageStatError) {
        if mkdir(path, 0o755) == 0 { return }
        // A directory named after our own pid can only be left over from a dead process with
        // the same pid; rmdir succeeds only if no process is in it.
        if errno == EEXIST && rmdir(path) == 0 && mkdir(path, 0o755) == 0 { return }
        throw failure("mkdir", path, errno)
    }

    /// Writes `text` to a cgroup file in one write(2), as the kernel wants it.
    static func writeFile(_ path: String, _ text: String) throws(PageStatError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("open", path, errno) }
        defer { close(fd) }
        var text = text
        let written = text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == text.utf8.count else { throw failure("write \(text) to", path, errno) }
    }

    private static func failure(_ call: String, _ path: String, _ code: Int32) -> PageStatError {
        switch Errno(rawValue: code) {
        case .permissionDenied, .notPermitted, .readOnlyFileSystem:
            return .permissionDenied(.cgroupFilesystem(path: path))
        case let error:
            return .system(call: "\(call) \(path)", errno: error)
        }
    }
}

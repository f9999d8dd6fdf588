import CPagestat
import PageStat

#if canImport(Glibc)
import Glibc
#endif

/// The temporary swap file a command turned on, for `remove()`.
nonisolated(unsafe) private var temporarySwap: UndoOnExit.Action?

/// Swap for commands that page memory out (`demo`, `doctor --verify`): what is on, or, as root
/// with none on, a temporary swap file `DIRECTORY/pagestat-PID.swap` that never outlives the
/// command: it is registered with `UndoOnExit` (swapoff(2), then unlink(2)) the moment open(2)
/// creates it, with the signals held until then, so normal exit, `exit`, a write error and every
/// signal but SIGKILL turn it off and remove it. After a SIGKILL, `pagestat doctor` names the
/// file and `doctor --clean` removes it.
package enum TemporarySwap {
    /// tmpfs and ramfs (statfs f_type): a swap file there would live in memory, and swapon refuses it.
    package static let memoryFilesystems: [Int: String] = [0x0102_1994: "tmpfs", 0x8584_58f6: "ramfs"]

    /// What `enable` found or did.
    package enum Outcome: Equatable {
        /// Swap was on: these areas (/proc/swaps).
        case using([String])
        /// A temporary swap file of `bytes` was turned on at `path`; `noneWasOn` when no swap was.
        case turnedOn(path: String, bytes: UInt64, noneWasOn: Bool)
    }

    /// Makes sure swap is on. With `always`, turns on a temporary swap file even when swap is on
    /// (at the lowest priority, below the areas already on).
    package static func enable(directory: String, bytes: UInt64, always: Bool = false) throws(PageStatError) -> Outcome {
        let active = SwapArea.active()
        if !active.isEmpty && !always {
            return .using(active.map(\.path))
        }
        guard geteuid() == 0 else {
            throw .unsupported(always
                ? "a temporary swap file needs root"
                : "swap is off, and pages cannot be swapped out without it. Turn swap on (swapon), or run this as root and it will turn on a temporary swap file")
        }
        try checkDirectory(directory)
        let path = "\(directory)/pagestat-\(getpid()).swap"
        // Held from before the file exists until its removal is registered: a signal in between
        // waits, then removes it.
        CPagestat_undo_install()
        CPagestat_undo_hold_signals()
        var held = true
        defer { if held { CPagestat_undo_release_signals() } }
        var action: UndoOnExit.Action?
        var registering: PageStatError?
        do throws(PageStatError) {
            try SwapArea.enableFile(at: path, bytes: bytes) {
                do throws(PageStatError) { action = try UndoOnExit.swapFile(path) } catch { registering = error }
                CPagestat_undo_release_signals()
                held = false
            }
        } catch {
            action?.cancel()
            throw error
        }
        if let registering {
            SwapArea.disableFile(at: path)
            throw registering
        }
        temporarySwap = action
        return .turnedOn(path: path, bytes: bytes, noneWasOn: active.isEmpty)
    }

    /// Turns off and removes the temporary swap file, if one was turned on and no signal did:
    /// nil, or why it could not.
    package static func remove() -> PageStatError? {
        guard let action = temporarySwap else { return nil }
        temporarySwap = nil
        return action.run()
    }

    /// A directory for a swap file: not empty, not on tmpfs or ramfs. Usage errors.
    package static func checkDirectory(_ directory: String) throws(PageStatError) {
        guard !directory.isEmpty else { throw .invalidInput("the swap file directory is empty: name a directory on a disk filesystem") }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "open \(directory)", errno: .init(rawValue: errno)) }
        defer { close(fd) }
        let type = CPagestat_fstatfs_type(fd)
        if let name = memoryFilesystems[type] {
            throw .invalidInput("\(directory) is on \(name): a swap file there would live in memory (and swapon refuses it); name a directory on a disk filesystem")
        }
    }

    /// A `pagestat-PID.swap` left in `directory` by a pagestat that no longer runs (it was
    /// killed with SIGKILL, or the machine stopped): whether it is still on (/proc/swaps).
    package struct Leftover: Equatable {
        package var path: String
        package var pid: Int32
        package var active: Bool
    }

    /// The leftovers in `directory`, and the active areas named like one anywhere: files named
    /// `pagestat-PID.swap` whose PID is not a running pagestat (/proc/PID/comm).
    package static func leftovers(in directory: String) -> [Leftover] {
        let active = Set(SwapArea.active().map(\.path))
        var found: [String: Int32] = [:]
        func consider(_ path: String) {
            let name = path.split(separator: "/").last.map(String.init) ?? path
            guard name.hasPrefix("pagestat-"), name.hasSuffix(".swap"),
                  let pid = Int32(name.dropFirst("pagestat-".count).dropLast(".swap".count)), pid > 0 else { return }
            if let comm = try? ProcFS.readText("/proc/\(pid)/comm", pid: pid, what: "comm"), comm.hasPrefix("pagestat") { return }
            found[path] = pid
        }
        active.forEach(consider)
        if let dir = opendir(directory) {
            defer { closedir(dir) }
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                consider(directory.hasSuffix("/") ? directory + name : directory + "/" + name)
            }
        }
        return found.map { Leftover(path: $0.key, pid: $0.value, active: active.contains($0.key)) }.sorted { $0.path < $1.path }
    }

    /// Turns a leftover off and removes it: nil, or why it could not.
    package static func clean(_ leftover: Leftover) -> String? {
        if leftover.active && CPagestat_swapoff(leftover.path) != 0 {
            return "swapoff \(leftover.path): \(String(cString: strerror(errno)))"
        }
        if unlink(leftover.path) != 0 && errno != ENOENT {
            return "unlink \(leftover.path): \(String(cString: strerror(errno)))"
        }
        return nil
    }
}

import ArgumentParser
import CPagestat
import PageStat
import PageStatRender

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    /// Copies a process's or an object's memory into image files without swapping any of it in.
    struct Snapshot: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "snapshot",
            abstract: "Copy a process's or a shared memory object's memory without swapping any of it in.",
            discussion: """
            Reading memory through its mapping or its file (dd of /proc/PID/map_files/..., cp of \
            a /dev/shm file) swaps every swapped page back in. snapshot reads present pages from \
            memory (process_vm_readv; pread of pages resident in the object) and swapped pages \
            straight from their swap slots (O_DIRECT from the swap device), so the target's memory \
            and its cgroup stay as they were. Each page read from a slot is checked again after \
            the read (pagemap, or the object's page-cache xarray); a page that moved meanwhile is \
            read again, else reported. Pages never touched become holes (a sparse image), pages \
            of file-backed mappings that are not in memory are left to the file.

            The manifest (JSON: next to the image as IMAGE.json, in DIR as manifest.json, or \
            --manifest) lists every run of pages with its source: memory, swap (type and offset), \
            zero (a swapped zero page), hole, file, swapped-in, unsettled. Needs root.

            Examples:
              pagestat snapshot 1234 --range 0x7f0000000000+1G -o guest.img
              pagestat snapshot --file /dev/shm/vm-ram -o vm-ram.img
              pagestat snapshot --file /proc/1234/fd/5 -o guest.img --freeze
              pagestat snapshot 1234 -o /var/tmp/snap/     # every anonymous and shared mapping

            Swap areas it cannot read correctly (zswap enabled, a device it may not open) are \
            refused with exit 11; --allow-swap-in then reads those pages through the memory \
            instead (swapping them in) and counts them.
            """
        )

        @Argument(help: ArgumentHelp("The process.", valueName: "pid"))
        var pid: Int32?

        @Option(help: ArgumentHelp("Only this range of the process: START+LENGTH or START-END (0x hex or decimal; a length may carry K, M, G or T). The image holds it byte for byte.",
                                   valueName: "range"))
        var range: String?

        @Option(name: .customLong("file"), help: ArgumentHelp("A shared memory object: a tmpfs or /dev/shm file, /proc/PID/fd/N or /proc/PID/map_files/START-END.",
                                                               valueName: "path"))
        var objectPath: String?

        @Option(name: [.customShort("o"), .customLong("output")],
                help: ArgumentHelp("The image (a directory for a whole process).", valueName: "path"))
        var output: String

        @Option(help: ArgumentHelp("Where to write the manifest.", valueName: "path"))
        var manifest: String?

        @Option(help: "The brief on stdout: text or json.")
        var format: OutputFormat = .text

        @Flag(help: "Read pages of swap areas that cannot be read directly through the memory instead (this swaps them in).")
        var allowSwapIn = false

        @Flag(help: "Stop the target while it is copied (its own cgroup's freezer, else SIGSTOP), for a point-in-time image; it is always resumed.")
        var freeze = false

        func validate() throws {
            if format == .csv { throw ValidationError("--format is text or json") }
            switch (pid, objectPath) {
            case (nil, nil): throw ValidationError("name a process (its pid) or an object (--file PATH)")
            case (_?, _?): throw ValidationError("name a process or --file, not both")
            case (nil, _?) where range != nil: throw ValidationError("--range goes with a process, not --file")
            case (nil, _?) where freeze: throw ValidationError("--freeze goes with a process")
            default: break
            }
        }

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                guard geteuid() == 0 else {
                    throw .permissionDenied(what: "snapshot reads pagemap swap entries, map_files and swap devices: run it as root")
                }
                let started = Stopwatch.nowSeconds()
                var options = SnapshotOptions(allowSwapIn: allowSwapIn)
                let snapshot: PageSnapshot
                let target: String
                var addressRange: AddressRange?
                if let objectPath {
                    snapshot = try PageSnapshot(objectAt: objectPath, options: options)
                    target = objectPath
                } else {
                    let pid = pid!
                    if let range { addressRange = try AddressRange(parsing: range) }
                    if addressRange == nil { options.mappingKinds = [.privateAnon, .sharedAnon, .shmem] }
                    snapshot = try PageSnapshot(pid: pid, range: addressRange, options: options)
                    target = "pid \(pid)"
                }
                let directory = pid != nil && addressRange == nil
                var images = ImageSet(output: output, directory: directory, pageSize: snapshot.pageSize)
                var manifest = SnapshotManifest(target: target, pageSize: snapshot.pageSize)
                let freezer = freeze ? try Freezer(pid: pid!) : nil
                let cgroup = freezer?.cgroup ?? pid.flatMap(Freezer.cgroupDirectory)
                let swapIns = (machine: SwapIns.machine(), cgroup: cgroup.flatMap(SwapIns.cgroup))
                var progress = SnapshotProgress()
                let result: SnapshotResult
                do throws(PageStatError) {
                    result = try snapshot.copy { (chunk) throws(PageStatError) in
                        try images.write(chunk, range: addressRange, objectSize: snapshot.objectSize)
                        progress.add(chunk.pages * snapshot.pageSize)
                    }
                    try freezer?.thaw()
                    try images.finish(objectSize: snapshot.objectSize, range: addressRange)
                } catch {
                    _ = try? freezer?.thaw()
                    images.abandon()
                    progress.clear()
                    throw error
                }
                progress.clear()
                manifest.images = images.done
                manifest.totals = result.totals
                manifest.planned = result.planned
                manifest.notes = result.notes.map(\.description)
                manifest.frozen = freezer?.how
                if let before = swapIns.machine, let after = SwapIns.machine() { manifest.machineSwapIns = after &- before }
                if let before = swapIns.cgroup, let after = cgroup.flatMap(SwapIns.cgroup) { manifest.cgroupSwapIns = after &- before }
                manifest.seconds = Stopwatch.nowSeconds() - started
                let manifestPath = self.manifest ?? (directory ? output + "/manifest.json" : output + ".json")
                try ImageSet.writeAtomically(SnapshotRenderer.manifest(manifest), to: manifestPath)
                writeOut(SnapshotRenderer.brief(manifest, format: format))
            }
        }
    }
}

/// The image files of one snapshot: each written under a temporary name (removed on every way
/// out, signals included, by `UndoOnExit`) and renamed when complete. Holes are left unwritten:
/// the image is sparse.
struct ImageSet {
    let output: String
    let directory: Bool
    let pageSize: UInt64
    private(set) var done: [SnapshotManifest.Image] = []
    private var current: (image: SnapshotManifest.Image, file: TemporaryFile)?

    init(output: String, directory: Bool, pageSize: UInt64) {
        self.output = output
        self.directory = directory
        self.pageSize = pageSize
    }

    mutating func write(_ chunk: SnapshotChunk, range: AddressRange?, objectSize: UInt64?) throws(PageStatError) {
        let base: UInt64
        if directory, let mapping = chunk.mapping {
            if current?.image.mapping != mapping {
                try finishCurrent(size: nil)
                if done.isEmpty && current == nil { try Self.makeDirectory(output) }
                let name = "\(String(mapping.range.start, radix: 16))-\(String(mapping.range.end, radix: 16)).img"
                current = (SnapshotManifest.Image(path: output + "/" + name, mapping: mapping, bytes: mapping.range.length),
                           try TemporaryFile(final: output + "/" + name))
            }
            base = mapping.range.start
        } else {
            if current == nil {
                current = (SnapshotManifest.Image(path: output, mapping: nil, bytes: range?.length ?? objectSize ?? 0),
                           try TemporaryFile(final: output))
            }
            base = range?.start ?? 0
        }
        let offset = chunk.start - base
        current!.image.add(chunk, imageOffset: offset, pageSize: pageSize)
        if let bytes = chunk.bytes { try current!.file.write(bytes, at: offset) }
    }

    mutating func finish(objectSize: UInt64?, range: AddressRange?) throws(PageStatError) {
        if current == nil && !directory {
            current = (SnapshotManifest.Image(path: output, mapping: nil, bytes: range?.length ?? objectSize ?? 0),
                       try TemporaryFile(final: output))
        }
        if current == nil && directory && done.isEmpty { try Self.makeDirectory(output) }
        try finishCurrent(size: nil)
    }

    private mutating func finishCurrent(size: UInt64?) throws(PageStatError) {
        guard let open = current else { return }
        current = nil
        try open.file.commit(size: open.image.bytes)
        done.append(open.image)
    }

    /// Removes what this snapshot wrote: the image being written and the images already complete.
    mutating func abandon() {
        current?.file.discard()
        current = nil
        for image in done { unlink(image.path) }
        done = []
    }

    static func makeDirectory(_ path: String) throws(PageStatError) {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw .system(call: "mkdir \(path)", errno: .init(rawValue: errno))
        }
    }

    static func writeAtomically(_ text: String, to path: String) throws(PageStatError) {
        let file = try TemporaryFile(final: path)
        let bytes = Array(text.utf8)
        do throws(PageStatError) {
            let failure = bytes.withUnsafeBytes { bytes in Result { () throws(PageStatError) in try file.write(bytes, at: 0) } }
            try failure.get()
            try file.commit(size: UInt64(bytes.count))
        } catch {
            file.discard()
            throw error
        }
    }
}

/// A file written under a temporary name beside its final one, renamed into place when complete,
/// removed on failure and on any exit before that.
final class TemporaryFile {
    let final: String
    let temporary: String
    let fd: Int32
    private let undo: UndoOnExit.Action

    init(final: String) throws(PageStatError) {
        self.final = final
        let slash = final.lastIndex(of: "/")
        let directory = slash.map { String(final[...$0]) } ?? ""
        let name = slash.map { String(final[final.index(after: $0)...]) } ?? final
        temporary = "\(directory).\(name).pagestat-\(getpid()).tmp"
        undo = try UndoOnExit.unlink(temporary)
        fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let error = errno
            undo.cancel()
            throw .system(call: "create \(temporary)", errno: .init(rawValue: error))
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PageStatError) {
        var done = 0
        while done < bytes.count {
            let written = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw .system(call: "write \(final)", errno: .init(rawValue: written < 0 ? errno : EIO)) }
            done += written
        }
    }

    /// Sets the size (the tail past the last written page stays a hole), then renames it into place.
    func commit(size: UInt64) throws(PageStatError) {
        guard ftruncate(fd, off_t(size)) == 0, fsync(fd) == 0 else {
            throw .system(call: "write \(final)", errno: .init(rawValue: errno))
        }
        close(fd)
        guard rename(temporary, final) == 0 else {
            let error = errno
            undo.run()
            throw .system(call: "rename \(temporary) to \(final)", errno: .init(rawValue: error))
        }
        undo.cancel()
    }

    func discard() {
        close(fd)
        undo.run()
    }
}

/// Stops the target for a point-in-time image: its own cgroup's freezer (cgroup v2
/// cgroup.freeze) where it is alone in a cgroup, else SIGSTOP; resumed by `thaw` or, on any
/// other way out (signals included), by `UndoOnExit`.
struct Freezer {
    let how: String
    let cgroup: String?
    private let undo: UndoOnExit.Action

    init(pid: Int32) throws(PageStatError) {
        let directory = Self.cgroupDirectory(pid)
        if let directory, access(directory + "/cgroup.freeze", W_OK) == 0,
           let procs = try? ProcFS.readText(directory + "/cgroup.procs", pid: pid, what: "cgroup.procs"),
           procs.split(separator: "\n").map(String.init) == [String(pid)] {
            undo = try UndoOnExit.write("0", to: directory + "/cgroup.freeze")
            how = "cgroup freezer"
            cgroup = directory
            guard Self.write("1", to: directory + "/cgroup.freeze") else {
                undo.run()
                throw .system(call: "write \(directory)/cgroup.freeze", errno: .init(rawValue: errno))
            }
            Self.wait { (try? ProcFS.readText(directory + "/cgroup.events", pid: pid, what: "cgroup.events"))?.contains("frozen 1") == true }
        } else {
            undo = try UndoOnExit.continueProcess(pid)
            how = "SIGSTOP"
            cgroup = directory
            guard kill(pid, SIGSTOP) == 0 else {
                undo.cancel()
                throw errno == ESRCH ? .noSuchProcess(pid: pid) : .system(call: "kill(\(pid), SIGSTOP)", errno: .init(rawValue: errno))
            }
            Self.wait { Self.allThreadsStopped(pid) }
        }
    }

    func thaw() throws(PageStatError) {
        if let failure = undo.run() { throw failure }
    }

    /// The target's cgroup v2 directory, when it is not the root.
    static func cgroupDirectory(_ pid: Int32) -> String? {
        guard let text = try? ProcFS.readText("/proc/\(pid)/cgroup", pid: pid, what: "cgroup"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        let path = line.dropFirst(3)
        guard path != "/" else { return nil }
        return "/sys/fs/cgroup" + path
    }

    private static func write(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var text = text
        return text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) } == text.utf8.count
    }

    /// Polls `done` every millisecond for up to two seconds.
    private static func wait(_ done: () -> Bool) {
        for _ in 0..<2000 where !done() { usleep(1000) }
    }

    /// Whether every thread of `pid` is in state T (stopped).
    private static func allThreadsStopped(_ pid: Int32) -> Bool {
        guard let directory = opendir("/proc/\(pid)/task") else { return true }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let tid = Int32(name),
                  let stat = try? ProcFS.readText("/proc/\(pid)/task/\(tid)/stat", pid: pid, what: "stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            let state = stat[stat.index(close, offsetBy: 2)...].first
            if state != "T" && state != "t" { return false }
        }
        return true
    }
}

/// pswpin counters: the machine's (/proc/vmstat) and a cgroup's (memory.stat).
enum SwapIns {
    static func machine() -> UInt64? { field("/proc/vmstat") }
    static func cgroup(_ directory: String) -> UInt64? { field(directory + "/memory.stat") }

    private static func field(_ path: String) -> UInt64? {
        guard let text = try? ProcFS.readText(path, pid: getpid(), what: path) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("pswpin ") {
            return UInt64(line.dropFirst(7))
        }
        return nil
    }
}

/// One line on stderr, rewritten at most twice a second, while stderr is a terminal.
struct SnapshotProgress {
    private let interactive = isatty(2) == 1
    private var bytes: UInt64 = 0
    private var shown = 0.0
    private var visible = false

    mutating func add(_ count: UInt64) {
        bytes += count
        guard interactive else { return }
        let now = Stopwatch.nowSeconds()
        guard now - shown >= 0.5 else { return }
        shown = now
        visible = true
        printError("\rsnapshot: \(humanBytes(bytes)) copied\u{1b}[K", newline: false)
    }

    mutating func clear() {
        guard visible else { return }
        visible = false
        printError("\r\u{1b}[K", newline: false)
    }
}

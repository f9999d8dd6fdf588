import ArgumentParser
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
                    throw .permissionDenied(.needsRoot("snapshot reads pagemap swap entries, map_files and swap devices: run it as root"))
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

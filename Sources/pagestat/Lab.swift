import ArgumentParser
import PageStat
import PageStatRender
import PageStatLab

#if canImport(Glibc)
import Glibc
#endif

extension DirtyPattern: ExpressibleByArgument {}

extension Pagestat {
    /// Memory in known layouts, held for pagestat to be pointed at: the seed's anonymous memory
    /// (`anon`, the default) and every kind pagestat reads (`hold`).
    struct Lab: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lab",
            abstract: "Map memory, write and swap a known part of it, and hold it (the seed's test program).",
            discussion: Anon.discussion + """


            `pagestat lab hold` arranges every kind of memory pagestat reads instead (shared \
            anonymous, memfd, /dev/shm, SysV, private, file) in known layouts, for end-to-end \
            checks; see `pagestat lab hold --help`.
            """,
            subcommands: [Anon.self, Hold.self],
            defaultSubcommand: Anon.self
        )
    }
}

extension Pagestat.Lab {
    /// The 2021 kernel thread's test program, as a command: memory in a known layout, held.
    struct Anon: ParsableCommand {
        static let discussion = """
            Maps PAGES pages of anonymous memory (--shared: MAP_SHARED|MAP_ANONYMOUS, the kind \
            pagemap misreports once swapped; --private: MAP_PRIVATE|MAP_ANONYMOUS, for contrast), \
            writes --dirty PERCENT of them (a non-zero word per page: all-zero pages do not swap \
            like data), and makes them swap in one of two ways:

              --memory-limit SIZE  the seed's way. Before writing, move into a new memory
                  cgroup limited to SIZE, so that the kernel reclaims pages to swap as they
                  are written; which pages end up in swap is the kernel's choice.
                  cgroup v1: /sys/fs/cgroup/memory/pagestat-lab-PID, memory.limit_in_bytes
                  and memory.swappiness; cgroup v2: memory.max and memory.swap.max.
              --pageout PERCENT  exact. MADV_PAGEOUT on the first PERCENT% of the written
                  pages, in address order.

            Both need swap on (swapon --show); the cgroup needs root.

            When the layout is ready it prints one JSON line (start is the first address, \
            in decimal) and holds the memory:
              {"pid":4242,"start":139872155238400,\
              "pages":256,"page_size":4096}
            It holds it until SIGINT, SIGTERM or SIGHUP (with --exit-on-eof, also until \
            standard input ends), then frees it, moves back to its own cgroup, removes the one \
            it made, and exits 0. Interrupted before the layout is ready, it cleans up the same \
            way and exits 128+signal. Killed with SIGKILL, it leaves its cgroup behind: \
            rmdir /sys/fs/cgroup/memory/pagestat-lab-PID.

            Examples:
              # The seed's experiment: 256 shared pages written in a 512 KiB cgroup.
              pagestat lab --pages 256 --shared --dirty 100 --memory-limit 512K \\
                  --swappiness 60 &
              # Exactly half of the pages swapped, evenly spread; then compare the views.
              pagestat lab --pages 2048 --shared --dirty 100 --pattern alternate \\
                  --pageout 50 > lab.json &
              pagestat show --pid PID --range START+8M
              pagestat raw --pid PID --range START+8M | hexdump -C
              kill PID
            """

        static let configuration = CommandConfiguration(
            commandName: "anon",
            abstract: "Map anonymous memory, write and swap a known part of it, and hold it (the default; the seed's test program).",
            discussion: discussion
        )

        enum Sharing: String, EnumerableFlag {
            case shared
            case `private`

            static func help(for value: Sharing) -> ArgumentHelp? {
                switch value {
                case .shared: "MAP_SHARED|MAP_ANONYMOUS (shmem: pagemap reads 0 once swapped)."
                case .private: "MAP_PRIVATE|MAP_ANONYMOUS (pagemap keeps swap entries)."
                }
            }
        }

        @Option(help: "Pages to map.")
        var pages: Int

        @Flag(help: "Shared or private memory (one of them is required).")
        var sharing: Sharing

        @Option(help: ArgumentHelp("Percent of the pages to write, 0-100.", valueName: "percent"))
        var dirty: Int

        @Option(help: ArgumentHelp("Run in a new memory cgroup with this limit (512K, 4M, 1G): written pages beyond it go to swap.",
                                   valueName: "size"))
        var memoryLimit: String?

        @Option(help: "The cgroup's memory.swappiness, 0-200 (cgroup v1 only; default: inherited; the seed used 60; 0 keeps the pages out of swap).")
        var swappiness: Int?

        @Option(help: ArgumentHelp("MADV_PAGEOUT the first PERCENT% of the written pages.", valueName: "percent"))
        var pageout: Int?

        @Option(help: "Which pages to write: first (the first ones), alternate (evenly spread: every other page at 50%), random.")
        var pattern: DirtyPattern = .first

        @Option(help: "Seed for --pattern random: the same seed picks the same pages.")
        var seed: UInt64?

        @Flag(help: "Once the layout is ready, also stop when standard input ends (for scripts and tests that hold a pipe to it).")
        var exitOnEof = false

        func validate() throws {
            guard (1...DirtyPlan.maxPages).contains(pages) else { throw ValidationError("--pages must be 1...\(DirtyPlan.maxPages)") }
            guard (0...100).contains(dirty) else { throw ValidationError("--dirty must be a percentage, 0...100") }
            if let pageout, !(0...100).contains(pageout) { throw ValidationError("--pageout must be a percentage, 0...100") }
            if let memoryLimit {
                do {
                    guard try ByteSize.parse(memoryLimit) > 0 else { throw ValidationError("--memory-limit must be more than 0") }
                } catch let error as PageStatError {
                    throw ValidationError(error.description)
                }
            }
            if let swappiness {
                guard memoryLimit != nil else { throw ValidationError("--swappiness applies to the cgroup that --memory-limit makes") }
                guard (0...200).contains(swappiness) else { throw ValidationError("--swappiness must be 0...200") }
            }
            if seed != nil && pattern != .random { throw ValidationError("--seed applies to --pattern random only") }
        }

        func run() throws {
            // A reader that goes away must not kill us before we remove the cgroup.
            signal(SIGPIPE, SIG_IGN)
            var status: Int32 = 0
            try reportingErrors { () throws(PageStatError) in status = try runLab() }
            if status != 0 { throw ExitCode(status) }
        }

        /// Sets everything up, holds it, tears it down; returns the exit status.
        private func runLab() throws(PageStatError) -> Int32 {
            let limit = try memoryLimit.map { text throws(PageStatError) in try ByteSize.parse(text) }
            if limit != nil || pageout != nil {
                try SwapArea.require(for: limit != nil ? "--memory-limit" : "--pageout")
            }
            let stop = try StopRequest(watchStandardInput: exitOnEof)
            var cgroup: MemoryCgroup?
            if let limit {
                cgroup = try MemoryCgroup.create(name: "pagestat-lab-\(getpid())", limit: limit, swappiness: swappiness)
            }
            defer {
                if let error = cgroup?.remove() { printError("pagestat: could not remove \(cgroup!.path): \(error)") }
            }
            try cgroup?.enter()
            return try arrangeAndHold(stop: stop)
        }

        /// Maps, writes and pages out; prints the layout and holds it until asked to stop. The
        /// memory is unmapped when this returns.
        private func arrangeAndHold(stop: StopRequest) throws(PageStatError) -> Int32 {
            let plan = DirtyPlan(pages: pages, percent: dirty, pattern: pattern, seed: seed ?? 1)
            let memory = try ArrangedMemory(pages: pages, backing: sharing == .shared ? .sharedAnonymous : .privateAnonymous)
            // One page at a time: no transparent huge pages (EINVAL without THP is fine).
            try? memory.advise(0..<pages, MADV_NOHUGEPAGE)
            if let signal = dirtyPages(plan, in: memory, stop: stop) { return 128 + signal }
            if let pageout {
                try pageOut(DirtyPlan.share(pageout, of: plan.count), of: plan, in: memory)
            }
            if let signal = stop.pending() { return 128 + signal }
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("start", memory.address)
            json.field("pages", pages)
            json.field("page_size", memory.pageSize)
            json.endObject()
            writeOut(json.output + "\n")
            // Nobody learns the layout when output is lost: tear down now (the exit says why).
            guard !StandardOutput.lost else { return 0 }
            // The memory must live until we are told to stop.
            withExtendedLifetime(memory) { _ = stop.wait() }
            return 0
        }

        /// Writes the plan's pages; returns the signal that interrupted it, if one did.
        private func dirtyPages(_ plan: DirtyPlan, in memory: ArrangedMemory, stop: StopRequest) -> Int32? {
            struct Interrupted: Error { let signal: Int32 }
            var progress = Progress(total: plan.count)
            var written = 0
            var sinceCheck = 0
            do {
                try plan.forEachRun { (run: Range<Int>) throws(Interrupted) in
                    var page = run.lowerBound
                    while page < run.upperBound {
                        let end = min(run.upperBound, page + Progress.checkEvery - sinceCheck)
                        memory.dirty(page..<end)
                        written += end - page
                        sinceCheck += end - page
                        page = end
                        guard sinceCheck >= Progress.checkEvery else { continue }
                        sinceCheck = 0
                        if let signal = stop.pending() { throw Interrupted(signal: signal) }
                        progress.update(written)
                    }
                }
            } catch {
                progress.finish(written, interrupted: true)
                return error.signal
            }
            progress.finish(written, interrupted: false)
            return nil
        }

        /// MADV_PAGEOUT on the first `count` written pages, repeated (briefly) until smaps counts
        /// them in swap: it skips pages it cannot isolate at that moment (e.g. in a CPU's LRU batch).
        private func pageOut(_ count: Int, of plan: DirtyPlan, in memory: ArrangedMemory) throws(PageStatError) {
            guard count > 0 else { return }
            var swapped = 0
            for _ in 0..<10 {
                if count == plan.count {
                    // Every written page: one call over the whole region (unwritten pages are skipped).
                    try memory.pageOut(0..<memory.pages)
                } else {
                    try plan.forEachRun(limit: count) { (run: Range<Int>) throws(PageStatError) in try memory.pageOut(run) }
                }
                let smaps = try ProcMaps.readSmaps(pid: getpid()).first { $0.range.start <= memory.address && memory.address < $0.range.end }
                swapped = Int((smaps?["Swap"] ?? 0) / UInt64(memory.pageSize))
                if swapped >= count { return }
                usleep(20_000)
            }
            printError("pagestat: warning: only \(swapped) of the \(count) pages paged out are in swap (smaps)")
        }
    }
}

/// The write end of the pipe that the stop signals' handler writes their number to.
nonisolated(unsafe) private var stopPipeWriteEnd: Int32 = -1

/// SIGINT, SIGTERM and SIGHUP (and, if asked, the end of standard input) as something to poll.
/// The handlers only write the signal's number to a pipe, so setup runs to a point where it can
/// unwind and clean up, instead of dying with a cgroup left behind.
final class StopRequest {
    private let readEnd: Int32
    private let watchStandardInput: Bool

    init(watchStandardInput: Bool) throws(PageStatError) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw .system(call: "pipe", errno: .init(rawValue: errno)) }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        readEnd = ends[0]
        stopPipeWriteEnd = ends[1]
        self.watchStandardInput = watchStandardInput
        // A parent may have left them blocked; they must get through.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for signo in [SIGINT, SIGTERM, SIGHUP] {
            sigaddset(&stopSignals, signo)
            signal(signo) { signo in
                let saved = errno
                var byte = UInt8(truncatingIfNeeded: signo)
                _ = write(stopPipeWriteEnd, &byte, 1)
                errno = saved
            }
        }
        sigprocmask(SIG_UNBLOCK, &stopSignals, nil)
    }

    /// The signal that asked to stop, if one did; never blocks. (Standard input is watched only
    /// by `wait()`: setup runs to the end, and the end of input is seen right after.)
    func pending() -> Int32? { poll(timeout: 0, standardInput: false) }

    /// Blocks until asked to stop; returns the signal (0: standard input ended).
    func wait() -> Int32 {
        while true {
            if let signal = poll(timeout: -1, standardInput: watchStandardInput) { return signal }
        }
    }

    private func poll(timeout: Int32, standardInput: Bool) -> Int32? {
        var fds = [pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)]
        if standardInput { fds.append(pollfd(fd: 0, events: Int16(POLLIN), revents: 0)) }
        guard Glibc.poll(&fds, nfds_t(fds.count), timeout) > 0 else { return nil }
        if fds[0].revents & Int16(POLLIN) != 0 {
            var byte: UInt8 = 0
            if read(readEnd, &byte, 1) == 1 { return Int32(byte) }
        }
        if fds.count > 1 && fds[1].revents != 0 && standardInputEnded() { return 0 }
        return nil
    }

    /// Reads (and drops) what is waiting on standard input; true at its end or on an error.
    private func standardInputEnded() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
        return count == 0 || (count < 0 && errno != EINTR && errno != EAGAIN)
    }
}

/// A progress line on stderr while writing many pages: on a terminal, one line updated in
/// place; otherwise a line a second, once it has taken more than a second.
struct Progress {
    /// Pages between two looks at the clock and at the stop request.
    static let checkEvery = 4096

    let total: Int
    private let interactive = isatty(2) == 1
    private let started = Stopwatch.nowSeconds()
    private var lastShown = 0.0
    private var shown = false

    init(total: Int) { self.total = total }

    mutating func update(_ done: Int) {
        let now = Stopwatch.nowSeconds()
        if interactive {
            guard now - lastShown >= 0.1 else { return }
        } else {
            guard now - started >= 1, now - lastShown >= 1 else { return }
        }
        lastShown = now
        shown = true
        printProgress(line(done) + (interactive ? "" : "\n"))
    }

    mutating func finish(_ done: Int, interrupted: Bool) {
        guard shown else { return }
        let elapsed = Double(Int((Stopwatch.nowSeconds() - started) * 10)) / 10
        printProgress(line(done) + (interrupted ? ", interrupted" : ", done in \(elapsed) s") + "\n")
    }

    private func line(_ done: Int) -> String {
        (interactive ? "\r" : "") + "pagestat lab: wrote \(done) of \(total) pages (\(total == 0 ? 100 : done * 100 / total)%)"
    }

    private func printProgress(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }

}

#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage
import Synchronization

/// Reads a shared object's page cache from inside the kernel: a BPF iterator program
/// (BPF/xarray.bpf.c) walks the object's `i_pages` xarray and reports, page index by page index,
/// a hole, a folio (resident), a swap entry with its swap type and offset (shmem), or a shadow
/// entry (any other file). It is what lseek SEEK_DATA/SEEK_HOLE and cachestat(2) read, with the
/// swap location that neither gives, at a few nanoseconds per page.
///
/// The program is loaded once per process (`shared()`), and once per kernel where bpffs is
/// mounted: the first run loads it with libbpf, opened at run time (`dlopen("libbpf.so.1")`),
/// which parses the kernel's BTF (tens of milliseconds), and pins it as root under
/// /sys/fs/bpf/pagestat (`Pin`); later runs take it from the pin with bpf(BPF_OBJ_GET), verified,
/// in well under a millisecond. It needs the kernel's BTF, BPF iterators (5.8+; the task filter
/// 6.1+), `bpf_loop` (5.17+), and CAP_BPF with CAP_PERFMON (or CAP_SYS_ADMIN). It reads metadata
/// only: no page is read, faulted, locked or referenced.
///
/// What an entry means depends on the file: on shmem (tmpfs, memfd, shared anonymous memory,
/// SysV shm; the program checks the superblock's TMPFS_MAGIC) a value entry is a swap entry; on
/// any other file it is reported as `.shadow`, which on a DAX filesystem is a DAX entry instead.
/// Indices are the page cache's: on hugetlbfs the kernel's own unit, not necessarily base pages.
/// The swap type is the index of the area in the kernel's swap_info, which is its line in
/// /proc/swaps (after the header) as long as no earlier area was turned off.
package final class XArrayWalker: Sendable {
    /// The loaded program: its shared map and iterator link, one pass at a time.
    private final class Program: Sendable {
        struct Handle: @unchecked Sendable {
            var loaded: CPagestat_xw_loaded
        }
        let handle: Mutex<Handle>
        /// The process that loaded it: the iterator is filtered to its descriptors.
        let pid: Int32
        /// Where the program came from: its pin, or libbpf (and whether it was pinned, or why not).
        let origin: String

        init(_ loaded: CPagestat_xw_loaded, pid: Int32, origin: String) {
            handle = Mutex(Handle(loaded: loaded))
            self.pid = pid
            self.origin = origin
        }
    }

    /// Where the program came from, in a sentence: "loaded from pin PATH", "loaded with libbpf
    /// and pinned at PATH for later runs", or loaded with libbpf and why it was not pinned.
    package var origin: String { program.origin }

    private let program: Program
    /// Whether the iterator link was created with the task filter (6.1+; a kernel that refuses
    /// it gets a link without, and one older than 6.1 may accept and ignore it): without the
    /// filter every task's files are iterated, and the program still matches only this
    /// process's descriptor (it checks the tgid).
    package let filteredByKernel: Bool
    /// Records one pass may write (at most CPAGESTAT_XW_MAX_RUNS, 32768); lowered by tests to
    /// exercise resuming.
    let runsPerPass: UInt32
    /// xarray nodes one pass may read (its bpf_loop budget, 65 steps a node): this bounds how
    /// long the program runs with the RCU read lock held (a leaf node is 64 pages). At most
    /// 1 << 16, which keeps the steps under bpf_loop's limit of 1 << 23.
    let nodesPerPass: UInt32

    private init(_ program: Program, filteredByKernel: Bool, runsPerPass: UInt32, nodesPerPass: UInt32) {
        self.program = program
        self.filteredByKernel = filteredByKernel
        self.runsPerPass = max(1, min(runsPerPass, UInt32(CPAGESTAT_XW_MAX_RUNS)))
        self.nodesPerPass = max(1, min(nodesPerPass, 1 << 16))
    }

    private static let loadResult: Result<XArrayWalker, PageStatError> = load()

    private static func load() -> Result<XArrayWalker, PageStatError> {
        var loaded = CPagestat_xw_loaded()
        var reason = [CChar](repeating: 0, count: 4096)
        var note = [CChar](repeating: 0, count: 2048)
        let pid = getpid()
        let root = Pin.root
        let status = root.withCString { pinRoot in
            CPagestat_xw_load(pid, Pin.enabled ? pinRoot : nil, &loaded, &reason, reason.count, &note, note.count)
        }
        func text(_ chars: [CChar]) -> String {
            String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let origin = text(note).isEmpty ? "loaded with libbpf (pinning off)" : text(note)
        if getenv("PAGESTAT_DEBUG_BPF") != nil {
            let line = "pagestat: BPF page-cache reader: " + (status == CPAGESTAT_XW_LOAD_OK ? origin : text(reason)) + "\n"
            _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(2, $0.baseAddress, $0.count - 1) }
        }
        guard status == CPAGESTAT_XW_LOAD_OK else {
            return .failure(.unsupported("BPF page-cache reader: \(text(reason))"))
        }
        return .success(XArrayWalker(Program(loaded, pid: pid, origin: origin),
                                     filteredByKernel: loaded.pid_filtered != 0,
                                     runsPerPass: UInt32(CPAGESTAT_XW_MAX_RUNS), nodesPerPass: 1 << 16))
    }

    /// Loads the BPF program (once per process; later calls reuse it, or throw the first
    /// failure again). Throws `PageStatError.unsupported` with the reason when it cannot:
    /// libbpf.so.1 missing, no BTF (/sys/kernel/btf/vmlinux), no BPF iterators, not permitted
    /// (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), or the verifier rejected the program (its
    /// log's first and last lines are in the reason).
    package static func shared() throws(PageStatError) -> XArrayWalker {
        try loadResult.get()
    }

    /// Whether the loaded program finds this process's own descriptors: one walk of an empty
    /// memfd of its own (once per process). In a PID namespace of its own (a container that
    /// mounted its own /proc), getpid() is not the tgid the program matches, and every walk
    /// fails with "descriptor N not found in this process".
    package static let seesOwnDescriptors: Result<Void, PageStatError> = {
        do throws(PageStatError) {
            let walker = try shared()
            let fd = CPagestat_memfd_create("pagestat-probe", 1 /* MFD_CLOEXEC */)
            guard fd >= 0 else { throw .system(call: "memfd_create", errno: Errno(rawValue: errno)) }
            defer { close(fd) }
            try walker.walk(fd: FileDescriptor(rawValue: fd), first: 0, count: 1) { _ in }
            return .success(())
        } catch {
            return .failure(.unsupported("BPF page-cache reader: it does not find this process's descriptors (a PID namespace of its own?): \(error)"))
        }
    }()

    /// This walker's program with other pass limits, for tests of resuming.
    func withPassLimits(runs: UInt32, nodes: UInt32) -> XArrayWalker {
        XArrayWalker(program, filteredByKernel: filteredByKernel, runsPerPass: runs, nodesPerPass: nodes)
    }

    /// Walks the page cache of the object open at `fd` in this process over page indices
    /// [first, first + count), calling `body` with runs in index order that cover the range
    /// exactly, holes included. Adjacent runs always differ (in kind, or for swap in the area or
    /// the offset's continuity). The object may change while it is walked: each run is what its
    /// slots held when the walk read them.
    ///
    /// `body` is called between passes of the walk, never while the program runs; it must not
    /// call `walk` on the same walker.
    package func walk(fd: FileDescriptor, first: UInt64, count: UInt64, _ body: (XArrayRun) -> Void) throws(PageStatError) {
        var pending: XArrayRun?
        var batch: [XArrayRun] = []
        batch.reserveCapacity(Int(runsPerPass))
        try passes(fd: fd, first: first, count: count) { records, shmem in
            batch.removeAll(keepingCapacity: true)
            for record in records {
                batch.append(XArrayRun(first: record.first, pages: record.pages, kind: Self.kind(record, shmem: shmem)))
            }
        } after: {
            for run in batch {
                if pending?.absorb(run) != true {
                    if let done = pending { body(done) }
                    pending = run
                }
            }
        }
        if let done = pending { body(done) }
    }

    /// The same walk, its runs appended to `runs` (merged with a last run they continue) straight
    /// from each pass's records, under the program's lock: for a caller that keeps the runs.
    package func walk(fd: FileDescriptor, first: UInt64, count: UInt64, appendingTo runs: inout [XArrayRun]) throws(PageStatError) {
        try passes(fd: fd, first: first, count: count) { records, shmem in
            if runs.capacity < runs.count + records.count { runs.reserveCapacity(max(runs.count + records.count, 2 * runs.capacity)) }
            var rest = records[...]
            // The program merges within a pass: only a pass's first record may continue the last run.
            if let record = rest.first, !runs.isEmpty,
               runs[runs.count - 1].absorb(XArrayRun(first: record.first, pages: record.pages, kind: Self.kind(record, shmem: shmem))) {
                rest = rest.dropFirst()
            }
            for record in rest {
                runs.append(XArrayRun(first: record.first, pages: record.pages, kind: Self.kind(record, shmem: shmem)))
            }
        } after: {}
    }

    /// The walk alone, for benchmarks: the program's passes over page indices [first, first +
    /// count) of the object at `path` (a /proc/PID/map_files entry, say), each pass's records
    /// looked at and dropped. Returns how many records the program wrote.
    package func walkAlone(path: String, first: UInt64, count: UInt64) throws(PageStatError) -> Int {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) } catch {
            throw .system(call: "open \(path)", errno: (error as? Errno) ?? .ioError)
        }
        defer { try? fd.close() }
        var records = 0
        try passes(fd: fd, first: first, count: count) { written, _ in records += written.count } after: {}
        return records
    }

    /// The swap entries of the object open at `fd` over page indices [first, first + count):
    /// `body` gets each run of consecutive swap slots (its first index, pages, and the first
    /// page's location), in index order, straight from the program's records. A run may be cut
    /// in two where one pass ended. `body` runs while the program's lock is held (between
    /// passes, not while the program runs): it must be short and must not walk. Nothing is
    /// reported for a file that is not shmem (its value entries are shadows, not swap).
    package func swapRuns(fd: FileDescriptor, first: UInt64, count: UInt64,
                          _ body: (_ first: UInt64, _ pages: UInt64, _ location: SwapLocation) -> Void) throws(PageStatError) {
        try passes(fd: fd, first: first, count: count) { records, shmem in
            guard shmem else { return }
            for record in records where record.kind == UInt64(CPAGESTAT_XW_SWAP) {
                body(record.first, record.pages, Self.location(record))
            }
        } after: {}
    }

    /// The passes of one walk over [first, first + count): `records` gets each pass's records
    /// under the lock, `after` runs after each pass, outside it.
    private func passes(fd: FileDescriptor, first: UInt64, count: UInt64,
                        records: (UnsafeBufferPointer<CPagestat_xw_run>, _ shmem: Bool) -> Void,
                        after: () -> Void) throws(PageStatError) {
        guard count > 0 else { return }
        guard getpid() == program.pid else {
            throw .unsupported("BPF page-cache reader: loaded by process \(program.pid), used in its child \(getpid()) after fork")
        }
        do { _ = try fd.stat() } catch { throw .system(call: "fstat", errno: error) }
        let (end, overflow) = first.addingReportingOverflow(count)
        guard !overflow else { throw .invalidInput("page range \(first)+\(count) overflows") }

        var next = first
        var retries = 0
        while next < end {
            let pass = try runPass(fd: fd, from: next, to: end, records: records)
            after()
            if pass.status == UInt32(CPAGESTAT_XW_RETRY) {
                retries = pass.next == next ? retries + 1 : 0
                if retries > 1000 {
                    throw .system(call: "xarray walk (a node kept being freed at index \(pass.next))", errno: .resourceTemporarilyUnavailable)
                }
            } else if pass.next <= next && pass.runs == 0 {
                throw .system(call: "xarray walk (no progress at index \(next))", errno: .ioError)
            }
            next = pass.next
        }
    }

    private struct Pass {
        var status: UInt32
        var next: UInt64
        var runs: Int
    }

    /// One run of the iterator over [from, to): the records it wrote, handed to `records` under the lock.
    private func runPass(fd: FileDescriptor, from: UInt64, to end: UInt64,
                         records: (UnsafeBufferPointer<CPagestat_xw_run>, _ shmem: Bool) -> Void) throws(PageStatError) -> Pass {
        let pid = program.pid
        let runsPerPass = runsPerPass, nodesPerPass = nodesPerPass
        let outcome: Result<Pass, PageStatError> = program.handle.withLock { handle in
            let loaded = handle.loaded
            // A pinned program is every run's: one pass at a time, results read under the lock.
            let locked = withUnsafePointer(to: loaded) { CPagestat_xw_begin($0) }
            if locked < 0 { return .failure(.system(call: "flock (the pinned BPF program)", errno: .init(rawValue: -locked))) }
            defer { withUnsafePointer(to: loaded) { CPagestat_xw_end($0) } }
            loaded.args.pointee = CPagestat_xw_args(first: from, end: end, tgid: pid, fd: UInt32(bitPattern: fd.rawValue),
                                                    max_runs: runsPerPass, max_nodes: nodesPerPass)
            loaded.result.pointee = CPagestat_xw_result()
            let err = withUnsafePointer(to: loaded) { CPagestat_xw_run($0) }
            if err < 0 { return .failure(.system(call: "bpf_iter_create/read", errno: .init(rawValue: -err))) }
            let result = loaded.result.pointee
            switch Int(result.status) {
            case Int(CPAGESTAT_XW_NOT_FOUND):
                return .failure(.system(call: "BPF page-cache reader: descriptor \(fd.rawValue) not found in this process", errno: .badFileDescriptor))
            case Int(CPAGESTAT_XW_BAD_ENTRY):
                return .failure(.unsupported("BPF page-cache reader: unknown xarray entry 0x\(String(result.bad_entry, radix: 16)) at page index \(result.next)"))
            default:
                break
            }
            let written = UnsafeBufferPointer(start: loaded.runs, count: Int(min(result.runs, runsPerPass)))
            records(written, result.s_magic == 0x0102_1994)
            return .success(Pass(status: result.status, next: result.next, runs: written.count))
        }
        return try outcome.get()
    }

    /// A swap record's first page's location: its swp_entry_t, type << 58 | offset.
    @inline(__always)
    private static func location(_ record: CPagestat_xw_run) -> SwapLocation {
        SwapLocation(type: UInt8(truncatingIfNeeded: record.swap >> 58), offset: record.swap & ((1 << 58) - 1))
    }

    @inline(__always)
    private static func kind(_ record: CPagestat_xw_run, shmem: Bool) -> XArrayRun.Kind {
        switch Int(record.kind) {
        case Int(CPAGESTAT_XW_FOLIO): return .resident
        case Int(CPAGESTAT_XW_SWAP):
            let swap = location(record)
            return .swap(type: swap.type, offset: swap.offset)
        case Int(CPAGESTAT_XW_SHADOW): return .shadow
        default: return .hole
        }
    }
}

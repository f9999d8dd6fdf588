import ArgumentParser
import PageStat
import PageStatRender

#if canImport(Glibc)
import Glibc
#endif

/// Prints how to move a range of a process's memory (a VM's guest RAM in a memfd, say) to another
/// host without reading a page that need not be read: extents to copy from memory, extents to
/// read from swap (with their swap location where the engine knows it), and extents to skip
/// because they were never touched. Uses nothing but PageStat's public API.
@main
struct MigrationPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a VM migration copy plan for a range of a process's memory.",
        discussion: """
        copy from memory: pages in memory, mapped by the process (present) or only in the \
        object's page cache (cached). read from swap: pages whose content is in swap, with \
        the first page's swap type and offset where the engine knows it (as root: private \
        memory always, shared memory with --engine bpf); an extent's pages sit in consecutive \
        swap slots. skip: pages never touched, which read as zeros at the destination. \
        unknown: pages pagestat could not tell (the notes say why); copy them by reading.

        With --copy FILE it then copies the range into FILE as a migration would (root): \
        pages in memory read in place, swapped pages read from their swap slots without \
        swapping them in, untouched pages left as holes.
        """
    )

    @Option(help: "The process that holds the memory.")
    var pid: Int32

    @Option(help: ArgumentHelp("START+LENGTH or START-END (0x hex or decimal; a length may carry K, M, G or T).",
                               valueName: "range"),
            transform: { text in try AddressRange(parsing: text) })
    var range: AddressRange

    @Option(help: "Which engine asks shared objects' page caches: auto, bpf or syscalls.",
            transform: { text in
                guard let engine = FileSideEngineChoice(rawValue: text) else {
                    throw ValidationError("unknown engine '\(text)' (auto, bpf or syscalls)")
                }
                return engine
            })
    var engine: FileSideEngineChoice = .auto

    @Option(help: ArgumentHelp("After the plan, copy the range into this file (sparse), swapped pages straight from swap.",
                               valueName: "file"))
    var copy: String?

    func run() throws {
        let scanner = try ProcessScanner(pid: pid)
        var options = ScanOptions(range: range)
        options.engine = engine
        let pageSize = scanner.pageSize
        print("Migration plan for process \(pid), \(range) (\(range.length / pageSize) pages of \(pageSize) bytes), engine \(engine)")
        var plan = Plan(pageSize: pageSize)
        let result = try scanner.scan(options, into: &plan)
        plan.flush()

        for action in Action.allCases {
            let pages = plan.totals[action, default: 0]
            var line = "total  \(pad(action.title, 16)) \(pad(String(pages), 10, right: true)) pages  \(humanBytes(pages * pageSize))"
            switch action {
            case .memory: line += " (\(plan.present) present, \(plan.cached) cached)"
            case .swap: line += " (\(plan.swapLocated) with their swap location)"
            case .skip, .unknown: break
            }
            print(line)
        }
        let unmapped = range.length / pageSize - plan.scannedPages
        print("total  \(pad("not mapped", 16)) \(pad(String(unmapped), 10, right: true)) pages")
        for note in result.notes { print("note: \(note)") }
        if let copy { try copyRange(to: copy) }
    }

    /// Copies the range with `PageSnapshot`: chunks arrive in address order, each with its
    /// source; those with bytes are written at their offset, the rest stay holes.
    func copyRange(to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ValidationError("cannot create \(path)") }
        defer { close(fd) }
        let snapshot = try PageSnapshot(pid: pid, range: range)
        let result = try snapshot.copy { (chunk) throws(PageStatError) in
            let written = chunk.withBytes { bytes in
                bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(chunk.start - range.start)) == $0.count }
            }
            guard written != false else { throw PageStatError.system(call: "write \(path)", errno: .init(rawValue: errno)) }
        }
        guard ftruncate(fd, off_t(range.length)) == 0 else { throw ValidationError("cannot size \(path)") }
        let totals = result.totals
        print("copied to \(path): \(totals.memory) pages from memory, \(totals.swap) from swap, "
              + "\(totals.zero + totals.holes) holes, \(totals.file) left to the file, \(totals.unsettled) unsettled")
    }
}

/// What the destination does with an extent.
enum Action: CaseIterable {
    case memory, swap, skip, unknown

    var title: String {
        switch self {
        case .memory: "copy from memory"
        case .swap: "read from swap"
        case .skip: "skip (untouched)"
        case .unknown: "unknown"
        }
    }

    init(_ state: PageState) {
        switch state {
        case .present, .cached: self = .memory
        case .swapped: self = .swap
        case .none: self = .skip
        case .unknown: self = .unknown
        }
    }
}

/// Adjacent pages with one action; for swap, in consecutive slots from `swap` (or all without a
/// known location).
struct Extent {
    var action: Action
    var start: UInt64
    var pages: UInt64
    var swap: SwapLocation?
}

/// Builds the plan from a streamed scan: runs arrive in address order, mapping by mapping, and
/// are folded into extents; each extent is printed as soon as the next run cannot extend it, so
/// only one extent and the totals are held, whatever the size of the range.
struct Plan: ScanConsumer {
    var totals: [Action: UInt64] = [:]
    var present: UInt64 = 0
    var cached: UInt64 = 0
    /// Swapped pages whose swap location the engine gave.
    var swapLocated: UInt64 = 0
    var scannedPages: UInt64 = 0
    /// The size of the pages that runs count (`ProcessScanner.pageSize`).
    let pageSize: UInt64
    /// The extent that the next run may still extend.
    private var open: Extent?

    init(pageSize: UInt64) { self.pageSize = pageSize }

    mutating func begin(_ mapping: Mapping, scanned: AddressRange) {
        scannedPages += scanned.length / pageSize
    }

    mutating func runs(_ runs: [PageRun]) {
        for run in runs {
            let action = Action(run.state)
            totals[action, default: 0] += run.pages
            switch run.state {
            case .present: present += run.pages
            case .cached: cached += run.pages
            case .swapped where run.swap != nil: swapLocated += run.pages
            default: break
            }
            if var extent = open, extent.action == action, extent.start + extent.pages * pageSize == run.start,
               Self.continues(extent.swap, pages: extent.pages, with: run.swap) {
                extent.pages += run.pages
                open = extent
            } else {
                flush()
                open = Extent(action: action, start: run.start, pages: run.pages, swap: run.swap)
            }
        }
    }

    mutating func end(use: MemoryUse?) {}

    /// Prints the open extent, if any.
    mutating func flush() {
        guard let extent = open else { return }
        open = nil
        let range = AddressRange(start: extent.start, end: extent.start + extent.pages * pageSize)
        var line = "  \(pad(extent.action.title, 16)) \(pad(range.description, 33)) \(pad(String(extent.pages), 10, right: true)) \(extent.pages == 1 ? "page " : "pages")"
        if extent.action == .swap {
            line += extent.swap.map { "  swap type \($0.type), offset 0x\(String($0.offset, radix: 16))" }
                ?? "  swap location unknown"
        }
        print(line)
    }

    /// Whether a run whose first page's swap location is `next` continues an extent of `pages`
    /// pages from `location`: both without a location, or in the very next slots of one area.
    static func continues(_ location: SwapLocation?, pages: UInt64, with next: SwapLocation?) -> Bool {
        switch (location, next) {
        case (nil, nil): true
        case let (location?, next?): location.type == next.type && location.offset + pages == next.offset
        default: false
        }
    }
}

func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

extension ProcessScanner {
    // MARK: file side

    /// Emits the runs of `report` (a mapping, or a piece of one) in order, each pending run
    /// replaced by what its object's page cache says. Shared memory mapped whole is first settled
    /// from the object's counts where they leave no doubt. Where the object cannot be opened or
    /// asked, pending pages are `unknown` and a note says why.
    func settle(_ report: MappingReport, all mappings: [Mapping], counts objectCounts: inout ObjectCountCache,
                        enabled: Bool, notes: inout Notes, into out: inout RunBuilder,
                        handOver: (inout RunBuilder) -> Void) throws(PageStatError) {
        func emit(_ run: PageRun) {
            out.append(run)
            if out.runs.count >= Self.handOverRuns { handOver(&out) }
        }
        let mapping = report.mapping
        let pendingPages = report.runs.reduce(UInt64(0)) { $0 + ($1.flags.contains(.pendingFileSide) ? $1.pages : 0) }
        // hugetlb pages were settled (or left unknown, with their note) by HugetlbSide.
        guard enabled, pendingPages > 0, mapping.kind != .hugetlb else {
            for var run in report.runs {
                run.flags.remove(.pendingFileSide)
                emit(run)
            }
            return
        }
        var fileSide: (any PageCacheEngine)?
        var settledAs: PageState?
        do throws(PageStatError) {
            let object = try openObject(mapping)
            guard object.residencyVisible else { throw PageStatError.permissionDenied(.residency) }
            var mode = FileSide.DataMode.perPage
            // The BPF engine, as asked or (`auto`) for shared memory where it loads: every page
            // from the xarray, swap locations included. Else the object's counts settle pages
            // without walking them where they leave no doubt.
            let bpf = try policy.bpfFromStart(for: object, notes: &notes)
            if !bpf, let shortcut = objectCounts.shortcut(report: report, object: object, pageSize: pageSize,
                                                          presentPages: presentPages) {
                switch shortcut {
                case .all(let state): settledAs = state
                case .data(let dataMode): mode = dataMode
                }
            }
            if settledAs == nil {
                let engine = policy.engine(for: object, bpf: bpf, dataMode: mode)
                var span: Range<UInt64>?
                var long: [(first: UInt64, pages: UInt64)] = []
                for run in report.runs where run.flags.contains(.pendingFileSide) {
                    let first = (mapping.offset + (run.start - mapping.range.start)) / pageSize
                    span = (span?.lowerBound ?? first)..<(first + run.pages)
                    if run.pages >= SyscallFileSide.countedStretchPages { long.append((first, run.pages)) }
                }
                try engine.prepare(span: span ?? 0..<0, long: long)
                fileSide = engine
            }
        } catch {
            if error == .processExited(pid: pid) { throw error }
            // `--engine bpf` where the BPF engine cannot load: the scan fails, with the reason.
            if policy.choice == .bpf, case .unsupported = error { throw error }
            notes.add(unknownReason(error, mapping: mapping))
        }
        let runs = report.runs
        // The BPF engine called directly: a fragmented piece has as many stretches as pages in
        // memory, and a call per stretch cost more than its answer.
        let bpfSide = fileSide as? BPFFileSide
        var index = 0
        while index < runs.count {
            // The BPF engine settles every run it has walked in one pass, and stops at the first
            // it has not (settled below, by the engine's own `resolve`).
            if let bpfSide, fileSide != nil, settledAs == nil {
                index = bpfSide.settle(runs, from: index, mapping: mapping, into: &out, handOverRuns: Self.handOverRuns,
                                       handOver: handOver)
                guard index < runs.count else { break }
            }
            defer { index += 1 }
            var run = runs[index]
            guard run.flags.contains(.pendingFileSide) else {
                emit(run)
                continue
            }
            run.flags.remove(.pendingFileSide)
            if let settledAs {
                run.state = settledAs
                emit(run)
                continue
            }
            guard let engine = fileSide else {
                emit(run)  // unknown, with the note that says why
                continue
            }
            let end = run.start + run.pages * pageSize
            var next = run.start
            do throws(PageStatError) {
                // The engine is asked a stretch at a time: the BPF engine a whole run, the
                // syscalls engine in stretches of at most 64 Ki pages.
                while next < end {
                    let first = (mapping.offset + (next - mapping.range.start)) / pageSize
                    let pages = engine.knowsSwapLocations ? (end - next) / pageSize
                        : min((end - next) / pageSize, EnginePolicy.stretchPages)
                    try engine.resolve(first: first, count: pages, at: next, flags: run.flags, into: &out)
                    next += pages * pageSize
                    if out.runs.count >= Self.handOverRuns { handOver(&out) }
                }
            } catch {
                if error == .processExited(pid: pid) { throw error }
                let label = mapping.path.isEmpty ? mapping.range.description : mapping.path
                notes.add(.fileSideFailed(mapping: label, error))
                fileSide = nil
                // What the engine appended before it failed stands.
                if let last = out.runs.last, last.start + last.pages * pageSize > next { next = last.start + last.pages * pageSize }
                if next < end { emit(PageRun(start: next, pages: (end - next) / pageSize, state: .unknown, flags: run.flags)) }
            }
        }
        if let engine = fileSide { policy.finished(engine) }
    }

    /// The present pages of `mapping` in the page table (PAGEMAP_SCAN, present), or nil without
    /// PAGEMAP_SCAN: cheaper than a wave's page-table read, as it copies out regions, not entries.
    func presentPages(_ mapping: Mapping) -> UInt64? {
        guard scanCategories.contains(.present) else { return nil }
        let buffer = UnsafeMutableBufferPointer<PagemapScan.Region>.allocate(capacity: 1024)
        defer { buffer.deallocate() }
        var present: UInt64 = 0
        do {
            try PagemapScan.scan(fd: pagemap.fileDescriptor, pid: pid, start: mapping.range.start, end: mapping.range.end,
                                 allOf: [.present], anyOf: [], returnMask: [.present], buffer: buffer) { regions in
                for region in regions { present += (region.end - region.start) / pageSize }
            }
        } catch {
            return nil
        }
        return present
    }

    /// The huge pages (object indices) of hugetlb object `id` that the process maps as file
    /// pages, in any of its mappings of it: PAGEMAP_SCAN (present and file) over each whole
    /// mapping. nil without PAGEMAP_SCAN.
    func mappedHugePages(of id: ObjectID, in mappings: [Mapping], hugePageSize: UInt64) throws(PageStatError) -> [Range<UInt64>]? {
        guard scanCategories.contains([.present, .file]) else { return nil }
        let buffer = UnsafeMutableBufferPointer<PagemapScan.Region>.allocate(capacity: 1024)
        defer { buffer.deallocate() }
        var ranges: [Range<UInt64>] = []
        for mapping in mappings where mapping.kind == .hugetlb && ObjectID(mapping) == id {
            try PagemapScan.scan(fd: pagemap.fileDescriptor, pid: pid, start: mapping.range.start, end: mapping.range.end,
                                 allOf: [.present, .file], anyOf: [], returnMask: [.present], buffer: buffer) { regions in
                for region in regions {
                    ranges.append(HugetlbSide.hugePages(mapping, AddressRange(start: region.start, end: region.end),
                                                        hugePageSize: hugePageSize))
                }
            }
        }
        return HugetlbSide.merged(ranges)
    }

    /// The object behind a mapping: /proc/PID/map_files when privileged, else the mapped path if
    /// it still names the very same inode; never a device or FIFO (see `PageCacheObject.open`).
    func openObject(_ mapping: Mapping) throws(PageStatError) -> PageCacheObject {
        try PageCacheObject.open(mapping: mapping, pid: pid, handle: handle)
    }

    func unknownReason(_ error: PageStatError, mapping: Mapping) -> ScanNote {
        let pages: ScanNote.FileSidePages = mapping.kind.isShmem ? .sharedSwappedOrCached : .fileCached
        switch error {
        case .permissionDenied(.residency): return .residencyHidden(pages)
        case .permissionDenied: return .mapFilesNeedsSysAdmin(pages, pid: pid)
        case .objectChanged(let message): return .objectChanged(pages, range: mapping.range, detail: message)
        default: return .objectNotOpened(pages, error)
        }
    }
}

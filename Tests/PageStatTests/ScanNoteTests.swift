import Foundation
import SystemPackage
import Testing

@testable import PageStat
@testable import PageStatRender
@testable import PageStatCore

/// The typed notes: every case says something, reports carry the case, renderers print its words.
@Suite("Scan notes")
struct ScanNoteTests {
    /// One value of every case; `caseIndex` is an exhaustive switch, so a new case fails to
    /// compile here until it has a sample.
    static let samples: [ScanNote] = {
        let error = PageStatError.system(call: "open", errno: .noSuchFileOrDirectory)
        let range = AddressRange(start: 0x1000, end: 0x3000)
        return [
            .notPrivileged, .kpageflagsNeedRoot, .kpageTableUnavailable(.kpageflags, error),
            .kpageTableUnavailable(.kpagecount, error), .cachestatMissing, .pagemapScanFlagsMissing,
            .bpfEngineAsAsked, .bpfEngineUnavailable(error),
            .countedByBPFAsAsked, .countedByBPF(dirtyAndWritebackUnknown: true), .cachestatMissingCountedByBPF,
            .cachestatMissingAndBPFUnavailable(error), .aboveUserAddressSpace(mapping: "[vsyscall]"),
            .nonSwapEntries(pages: 1), .mappingsChanged(count: 2), .residencyHidden(.fileCached),
            .mapFilesNeedsSysAdmin(.sharedSwappedOrCached, pid: 1), .objectChanged(.fileCached, range: range, detail: "x"),
            .objectNotOpened(.sharedSwappedOrCached, error), .fileSideFailed(mapping: "/dev/shm/a", error),
            .hugetlbMapFilesNeedsSysAdmin, .hugetlbObjectNotOpened(mapping: "/h", error),
            .hugetlbObjectNotOnHugetlbfs(mapping: "/h"), .hugetlbMappedElsewhereUnknown(mapping: "/h"),
            .hugetlbFileChanged(mapping: "/h"), .hugetlbHoldingUnknown(mapping: "/h", holding: 1, unmapped: 2),
            .pagemapEnded(address: 0xffff_ffff_ff60_0000, missing: 1), .unmappedWhileRead(range),
            .mountinfoUnreadable(error), .memfdProbeFailed(call: "memfd_create", .noMemory),
            .processMapsUnreadable(pid: 1, command: "init", error), .objectNotCounted(object: "/dev/shm/a", byBPF: false, error),
            .objectNotOpenedForCount(object: "/dev/shm/a", error), .objectsNeedRoot(count: 3), .sysvShmUnreadable(error),
            .processUnreadable(pid: 1, command: "init", error), .sharedObjectNotOpened(object: "/dev/shm/a", error),
            .cachestatFailed(object: "/dev/shm/a", stretches: 2, error), .sharedObjectsNeedSysAdmin(count: 4),
        ]
    }()

    static func caseIndex(_ note: ScanNote) -> Int {
        switch note {
        case .notPrivileged: 0
        case .kpageflagsNeedRoot: 1
        case .kpageTableUnavailable: 2
        case .cachestatMissing: 3
        case .pagemapScanFlagsMissing: 4
        case .bpfEngineAsAsked: 5
        case .bpfEngineUnavailable: 6
        case .countedByBPFAsAsked: 7
        case .countedByBPF: 8
        case .cachestatMissingCountedByBPF: 9
        case .cachestatMissingAndBPFUnavailable: 10
        case .aboveUserAddressSpace: 11
        case .nonSwapEntries: 12
        case .mappingsChanged: 13
        case .residencyHidden: 14
        case .mapFilesNeedsSysAdmin: 15
        case .objectChanged: 16
        case .objectNotOpened: 17
        case .fileSideFailed: 18
        case .hugetlbMapFilesNeedsSysAdmin: 19
        case .hugetlbObjectNotOpened: 20
        case .hugetlbObjectNotOnHugetlbfs: 21
        case .hugetlbMappedElsewhereUnknown: 22
        case .hugetlbFileChanged: 23
        case .hugetlbHoldingUnknown: 24
        case .pagemapEnded: 25
        case .unmappedWhileRead: 26
        case .mountinfoUnreadable: 27
        case .memfdProbeFailed: 28
        case .processMapsUnreadable: 29
        case .objectNotCounted: 30
        case .objectNotOpenedForCount: 31
        case .objectsNeedRoot: 32
        case .sysvShmUnreadable: 33
        case .processUnreadable: 34
        case .sharedObjectNotOpened: 35
        case .cachestatFailed: 36
        case .sharedObjectsNeedSysAdmin: 37
        }
    }

    /// Every note that carries an error hands it back typed, errno kept: a reader (the
    /// exporter's EMFILE check) matches the case, never the words.
    @Test func notesHandBackTheirErrorWithItsErrno() {
        let exhausted = PageStatError.system(call: "open /proc/1/maps", errno: .tooManyOpenFiles)
        let carried = Self.samples.compactMap(\.error)
        #expect(carried.count == 16)
        #expect(carried.allSatisfy { $0.errno == .noSuchFileOrDirectory || $0.errno == .noMemory })
        #expect(ScanNote.processMapsUnreadable(pid: 1, command: "init", exhausted).error?.errno == .tooManyOpenFiles)
        #expect(ScanNote.memfdProbeFailed(call: "memfd_create", .noMemory).error?.errno == .noMemory)
        #expect(ScanNote.notPrivileged.error == nil)
        #expect(PageStatError.noSuchProcess(pid: 1).errno == nil)
    }

    /// What was denied is a case; the line the user reads is the one it always was.
    @Test func deniedIsACaseWithTheSameWords() {
        let lines: [(PageStatError.Denial, String)] = [
            (.procFile("/proc/1/maps (needs ptrace read access)"), "permission denied: /proc/1/maps (needs ptrace read access)"),
            (.rootOnly(path: "/proc/kpageflags"), "permission denied: /proc/kpageflags (root only)"),
            (.cachestat, "permission denied: cachestat(2) needs write access to or ownership of the file"),
            (.residency, "permission denied: residency"),
            (.pageCacheOfUnwritableFile, "permission denied: the page cache of a file we neither own nor may write (mincore would call every page resident)"),
            (.path("/etc/shadow"), "permission denied: /etc/shadow"),
            (.cgroupFilesystem(path: "/sys/fs/cgroup/x"), "permission denied: /sys/fs/cgroup/x: the cgroup filesystem is not writable (run as root, with a writable /sys/fs/cgroup)"),
            (.needsRoot("bench runs lab in a memory cgroup: run it as root"), "permission denied: bench runs lab in a memory cgroup: run it as root"),
        ]
        for (denial, line) in lines { #expect(PageStatError.permissionDenied(denial).description == line) }
        if case .permissionDenied(.residency) = PageStatError.permissionDenied(.residency) {} else { Issue.record("not matched by case") }
    }

    @Test func everyCaseSaysSomething() {
        #expect(Set(Self.samples.map(Self.caseIndex)) == Set(0...37))
        for note in Self.samples {
            #expect(!note.description.isEmpty, "\(note)")
            #expect(!note.description.contains("\n"), "\(note)")
        }
        // The words carry the payloads.
        #expect(ScanNote.nonSwapEntries(pages: 1).description.hasPrefix("1 page unknown:"))
        #expect(ScanNote.mappingsChanged(count: 2).description.hasPrefix("2 mappings changed"))
        #expect(ScanNote.mapFilesNeedsSysAdmin(.sharedSwappedOrCached, pid: 42).description
            == "swapped or cached shared pages are unknown: opening /proc/42/map_files needs CAP_SYS_ADMIN (run as root)")
        #expect(ScanNote.pagemapEnded(address: 0xffff_ffff_ff60_0000, missing: 1).description
            .hasPrefix("pagemap ended at 0xffffffffff600000: 1 entries fewer"))
    }

    @Test func notesAreSaidOnce() {
        var notes = Notes()
        notes.add(.notPrivileged)
        notes.add(.mappingsChanged(count: 1))
        notes.add(.notPrivileged)
        notes.add(.mappingsChanged(count: 2))
        #expect(notes.all == [.notPrivileged, .mappingsChanged(count: 1), .mappingsChanged(count: 2)])
    }

    /// JSON keeps notes as the strings they always were.
    @Test func jsonNotesAreTheDescriptions() throws {
        let notes: [ScanNote] = [.notPrivileged, .aboveUserAddressSpace(mapping: "[vsyscall]")]
        let report = ProcessReport(pid: 1, pageSize: 4096, privileged: false, view: .truth, notes: notes, mappings: [])
        let json = try #require(JSONSerialization.jsonObject(with: Data(ReportRenderer.json(report).utf8)) as? [String: Any])
        #expect(json["notes"] as? [String] == notes.map(\.description))
    }

    /// [vsyscall] lies above the user address space pagemap covers: raw pagemap ends early there,
    /// and says so with the address and the count.
    @Test(.requiresKernel("vsyscall", (try? kernelText("/proc/self/maps"))?.contains("[vsyscall]") == true,
                    "a [vsyscall] mapping, which this kernel does not make (vsyscall=none, or not x86_64)"))
    func rawPagemapPastUserSpaceSaysWhere() throws {
        let scanner = try ProcessScanner(pid: getpid())
        let vsyscall = try #require(try scanner.currentMappings().first(where: { $0.path == "[vsyscall]" }))
        let raw = try RawPagemap(pid: getpid())
        let written = try raw.stream(vsyscall.range, kernelOnly: true) { _ throws(PageStatError) in }
        let expected = vsyscall.range.length / UInt64(ProcFS.pageSize)
        #expect(written < expected)
        #expect(raw.notes.all == [.pagemapEnded(address: vsyscall.range.start + written * UInt64(ProcFS.pageSize),
                                                missing: expected - written)])
    }
}

import PageStat

#if canImport(Glibc)
import Glibc
#endif

/// `doctor --verify`'s check: one region of the arranged layout scanned by one engine, against
/// what was arranged, page by page.
package struct Verification {
    package var region: String
    package var engine: FileSideEngineChoice
    package var pages: Int
    package var right: Int
    package var wrong: Int
    package var unknown: Int
    /// The first wrong page: (index, expected, reported).
    package var firstWrong: (Int, PageState, PageState)?

    /// Arranges `ArrangedLayout` of `pages` pages in this process, scans each region with
    /// the syscalls engine (and the BPF engine with `bpf`), and compares page by page.
    package static func verify(pages: Int, fileDirectory: String, bpf: Bool) throws(PageStatError) -> ([Verification], Notes) {
        let layout = try ArrangedLayout(pages: pages, fileDirectory: fileDirectory)
        let scanner = try ProcessScanner(pid: getpid())
        var engines: [FileSideEngineChoice] = [.syscalls]
        if bpf { engines.append(.bpf) }
        var results: [Verification] = []
        var notes = Notes()
        for engine in engines {
            for region in ArrangedLayout.regionNames {
                guard let start = layout.address(region) else { continue }
                var options = ScanOptions(range: AddressRange(start: start, end: start + UInt64(layout.pages * ProcFS.pageSize)))
                options.engine = engine
                let report = try scanner.scan(options)
                for note in report.notes { notes.add(note) }
                let states = report.mappings.flatMap { $0.runs.flatMap { Array(repeating: $0.state, count: Int($0.pages)) } }
                let expected = layout.expected(region)
                var result = Verification(region: region, engine: engine, pages: expected.count, right: 0, wrong: 0, unknown: 0)
                for (index, want) in expected.enumerated() {
                    let got = index < states.count ? states[index] : .unknown
                    if got == want {
                        result.right += 1
                    } else if got == .unknown {
                        result.unknown += 1
                    } else {
                        result.wrong += 1
                        if result.firstWrong == nil { result.firstWrong = (index, want, got) }
                    }
                }
                results.append(result)
            }
        }
        withExtendedLifetime(layout) {}
        return (results, notes)
    }
}

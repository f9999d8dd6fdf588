/// What to scan and how.
public struct ScanOptions: Sendable {
    /// Only mappings overlapping this range, clamped to it; nil for the whole address space.
    public var range: AddressRange?
    /// The joined truth, or the raw page table alone.
    public var view: ReportView
    /// THP and zero-page flags: as root from the PFNs and /proc/kpageflags, otherwise from
    /// PAGEMAP_SCAN (Linux 6.7+), a second walk of the page table.
    public var hugeAndZeroFlags: Bool
    /// Count RSS, PSS, USS and swap per mapping (PSS and USS from /proc/kpagecount, root only).
    public var accounting: Bool
    /// With `accounting`: PSS and USS too. They cost one /proc/kpagecount read per present page
    /// whose PFN does not follow the previous one's, most of a whole-machine scan's time.
    public var proportional: Bool = true
    /// Split runs by the kernel's page flags from /proc/kpageflags (root only).
    public var kernelPageFlags: Bool
    /// Whether to ask objects' page caches about pages the page table leaves open. Without it,
    /// those pages stay `unknown` (for callers that settle shared objects once, themselves).
    public var fileSide: Bool = true
    /// Which engine asks them.
    public var engine: FileSideEngineChoice = .auto
    /// Address space per wave, in pages, where not the default (`ProcessScanner.wavePages`).
    package var wavePages: UInt64?

    public init(range: AddressRange? = nil, view: ReportView = .truth, hugeAndZeroFlags: Bool = true,
                accounting: Bool = false, kernelPageFlags: Bool = false) {
        self.range = range
        self.view = view
        self.hugeAndZeroFlags = hugeAndZeroFlags
        self.accounting = accounting
        self.kernelPageFlags = kernelPageFlags
    }
}

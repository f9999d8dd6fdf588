import PageStat
/// How the pages that `pagestat lab` writes are spread over its region.
package enum DirtyPattern: String, Sendable, CaseIterable {
    /// The first pages of the region, as one stretch.
    case first
    /// Spread evenly: every other page at 50%, every fourth at 25%, starting with page 0.
    case alternate
    /// A random choice of pages, the same one for the same seed.
    case random
}

/// Which pages of a region of `pages` pages get written (`percent` of them, rounded half up),
/// and which of those get paged out: always the first ones written, in address order.
/// Pure: it only names page indices, as runs of adjacent pages; memory stays constant however
/// large the region is.
package struct DirtyPlan: Sendable, Equatable {
    package var pages: Int
    package var percent: Int
    package var pattern: DirtyPattern
    package var seed: UInt64

    /// The largest region a plan covers (4 TiB of 4 KiB pages), so page arithmetic cannot overflow.
    package static let maxPages = 1 << 30

    package init(pages: Int, percent: Int, pattern: DirtyPattern = .first, seed: UInt64 = 1) {
        precondition(pages >= 0 && pages <= Self.maxPages && (0...100).contains(percent))
        self.pages = pages
        self.percent = percent
        self.pattern = pattern
        self.seed = seed
    }

    /// How many pages get written.
    package var count: Int { Self.share(percent, of: pages) }

    /// `percent`% of `total`, rounded half up.
    package static func share(_ percent: Int, of total: Int) -> Int { (total * percent + 50) / 100 }

    /// Calls `body` with the written pages, at most `limit` of them (the first ones), as maximal
    /// runs of adjacent page indices in increasing order.
    package func forEachRun<E: Error>(limit: Int = .max, _ body: (Range<Int>) throws(E) -> Void) throws(E) {
        var left = min(limit, count)
        guard left > 0 else { return }
        var merger = RunMerger()
        func add(_ page: Int) throws(E) {
            if let run = merger.add(page) { try body(run) }
            left -= 1
        }
        switch pattern {
        case .first:
            try body(0..<left)
            return
        case .alternate:
            let count = self.count
            var index = 0
            while left > 0 {
                try add(index * pages / count)
                index += 1
            }
        case .random:
            // Selection sampling (Knuth's algorithm S): page i is taken with probability
            // needed / remaining, which picks exactly `count` pages, uniformly, in one pass.
            var generator = SplitMix64(seed: seed)
            var needed = UInt64(count)
            var page = 0
            while left > 0 {
                let remaining = UInt64(pages - page)
                if remaining.multipliedFullWidth(by: generator.next()).high < needed {
                    needed -= 1
                    try add(page)
                }
                page += 1
            }
        }
        if let run = merger.finish() { try body(run) }
    }
}

/// Joins increasing page indices into runs of adjacent pages.
struct RunMerger {
    private var current: Range<Int>?

    /// Adds `page`; returns the run it ends, if it does not continue the current one.
    mutating func add(_ page: Int) -> Range<Int>? {
        if let run = current, run.upperBound == page {
            current = run.lowerBound..<page + 1
            return nil
        }
        defer { current = page..<page + 1 }
        return current
    }

    mutating func finish() -> Range<Int>? {
        defer { current = nil }
        return current
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast, seedable generator, so that
/// `--pattern random --seed S` picks the same pages on every run and every machine.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension ArrangedMemory {
    /// Writes a non-zero, page-unique 8-byte word at the start of each page of `pages` (faults
    /// them in). Never zero: a page that stays all zeroes can be mapped to the zero page, skipped
    /// by swap (zero-filled pages are not written out) or merged, so it would not swap like data.
    package func dirty(_ pages: Range<Int>) {
        for page in pages {
            // "pagestat" in ASCII, with the page index folded into its low bytes.
            base.storeBytes(of: 0x7061_6765_7374_6174 ^ UInt64(page), toByteOffset: page * pageSize, as: UInt64.self)
        }
    }
}

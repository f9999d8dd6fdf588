/// One run of an object's page-cache slots (its `i_pages` xarray), in page indices, as the BPF
/// engine walks them.
public struct XArrayRun: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No entry.
        case hole
        /// A folio: the page is in memory (on shmem, a page in the swap cache too).
        case resident
        /// A shmem value entry: the swap type and offset of the run's first page; the run's next
        /// pages follow it at consecutive offsets (consecutive offsets merge into one run).
        case swap(type: UInt8, offset: UInt64)
        /// A value entry on a file that is not shmem: the workingset shadow of an evicted page.
        case shadow
    }

    public var first: UInt64
    public var pages: UInt64
    public var kind: Kind

    public init(first: UInt64, pages: UInt64, kind: Kind) {
        self.first = first
        self.pages = pages
        self.kind = kind
    }

    /// One past the run's last page index.
    public var end: UInt64 { first + pages }

    /// Appends `next` to this run when it continues it: adjacent, same kind and, for swap, the
    /// next swap offsets in the same area.
    package mutating func absorb(_ next: XArrayRun) -> Bool {
        guard next.first == end else { return false }
        switch (kind, next.kind) {
        case (.hole, .hole), (.resident, .resident), (.shadow, .shadow):
            break
        case let (.swap(type, offset), .swap(nextType, nextOffset)) where type == nextType && offset + pages == nextOffset:
            break
        default:
            return false
        }
        pages += next.pages
        return true
    }
}

extension XArrayRun.Kind {
    /// What a page with this entry is, seen from the page cache alone: a folio is `cached`, a
    /// shmem swap entry `swapped`, no entry (or a regular file's shadow of an evicted page) `none`.
    /// The one mapping from an xarray entry to a page state.
    @inlinable
    package var pageState: PageState {
        switch self {
        case .hole, .shadow: .none
        case .resident: .cached
        case .swap: .swapped
        }
    }
}

extension XArrayRun {
    /// The swap location of page `page` of the run (an index within it), for a run of swap entries.
    @inlinable
    package func swapLocation(at page: UInt64) -> SwapLocation? {
        guard case .swap(let type, let offset) = kind else { return nil }
        return SwapLocation(type: type, offset: offset + (page - first))
    }
}

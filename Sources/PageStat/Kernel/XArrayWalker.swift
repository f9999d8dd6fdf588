/// One run of an object's page-cache slots, in page indices.
public struct XArrayRun: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No entry.
        case hole
        /// A folio: a page in memory (on shmem, the swap cache included).
        case resident
        /// A shmem value entry: the swap type and offset of the run's first page.
        case swap(type: UInt8, offset: UInt64)
        /// A value entry on a regular file: the workingset shadow of an evicted page.
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
}

/// Walks a shared object's page-cache xarray with a BPF iterator (placeholder until the BPF
/// program lands: it always reports the engine unavailable).
public final class XArrayWalker: Sendable {
    public static func shared() throws(PageStatError) -> XArrayWalker {
        throw .unsupported("the BPF engine is not built into this pagestat")
    }

    public func walk(fd: Int32, first: UInt64, count: UInt64, _ body: (XArrayRun) -> Void) throws(PageStatError) {
        throw .unsupported("the BPF engine is not built into this pagestat")
    }
}

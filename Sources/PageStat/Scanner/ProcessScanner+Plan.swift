#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// Planning a scan: the mappings' page tables cut into chunks for the workers, and the chunks
/// grouped into waves that are read, settled, checked and handed on one after another.
extension ProcessScanner {
    /// A piece of page-table work: part of mapping `mapping`, and whether PAGEMAP_SCAN found it
    /// empty (then one chunk whatever its size).
    typealias Chunk = (mapping: Int, range: AddressRange, empty: Bool)
    /// Consecutive chunks of consecutive mappings, about `wavePages` of address space.
    typealias Wave = [(mapping: Int, chunks: Range<Int>)]

    /// The page tables of `scanned` (the mappings' parts to scan), in chunks, on every core.
    /// Where PAGEMAP_SCAN finds a long stretch with no page-table entries, the stretch is one
    /// chunk whatever its size; `fileSided` mappings' empty stretches at most a wave.
    func planChunks(_ mappings: [Mapping], scanned: [AddressRange], waveLimit: UInt64,
                    fileSided: (Mapping) -> Bool) throws(PageStatError) -> [Chunk] {
        var chunks: [Chunk] = []
        for (index, range) in scanned.enumerated() where mappings[index].range.start < Self.userSpaceEnd {
            var start = range.start
            let chunkBytes = Self.chunkPages * pageSize
            let huge = UInt64(PFNFlagSource.hugePages) * pageSize
            /// The first populated address at or after `start` that PAGEMAP_SCAN last found: an
            /// empty stretch cut into waves is scanned once, not once per wave (which walked its
            /// page tables again to the same far end, quadratic in the swapped-out shared memory).
            var populatedAt: UInt64?
            while start < range.end {
                if Self.skipsEmpty(mappings[index]) && !scanCategories.isEmpty && range.end - start > chunkBytes {
                    let next: UInt64
                    if let known = populatedAt, known > start {
                        next = known
                    } else {
                        next = try PagemapScan.firstPopulated(fd: pagemap.fileDescriptor, pid: pid, start: start,
                                                              end: range.end) ?? range.end
                        populatedAt = next
                    }
                    var aligned = next == range.end ? next : max(start, next - next % huge)
                    if aligned - start >= chunkBytes {
                        // Where the file side may split the stretch (swapped shared pages read
                        // empty), at most a wave of it: the file side asks a wave at a time.
                        if fileSided(mappings[index]) && aligned - start > waveLimit * pageSize {
                            aligned = start + waveLimit * pageSize
                        }
                        chunks.append((index, AddressRange(start: start, end: aligned), true))
                        start = aligned
                        continue
                    }
                }
                var end = range.end - start > chunkBytes ? start + chunkBytes : range.end
                // Chunks end on 2 MiB boundaries: a huge page is seen whole by one worker.
                if end < range.end && end % huge != 0 && end - end % huge > start { end -= end % huge }
                chunks.append((index, AddressRange(start: start, end: end), false))
                start = end
            }
        }
        return chunks
    }

    /// Waves of `chunks` (`chunksOf`: each mapping's chunks), about `waveLimit` pages of address
    /// space each: an empty chunk counts one page unless the file side may split it.
    func planWaves(_ chunks: [Chunk], chunksOf: [Range<Int>], mappings: [Mapping], waveLimit: UInt64,
                   fileSided: (Mapping) -> Bool) -> [Wave] {
        var waves: [Wave] = [[]]
        var wavePages: UInt64 = 0
        var waveChunks = 0
        for index in mappings.indices {
            let sided = fileSided(mappings[index])
            var start = chunksOf[index].lowerBound
            repeat {
                var end = start
                while end < chunksOf[index].upperBound {
                    // An empty stretch found by PAGEMAP_SCAN costs one run, whatever its size,
                    // unless the file side may split it (swapped shared pages read empty).
                    wavePages += chunks[end].empty && !sided ? 1 : chunks[end].range.length / pageSize
                    waveChunks += 1
                    end += 1
                    if wavePages >= waveLimit || waveChunks >= Self.waveChunks { break }
                }
                waves[waves.count - 1].append((index, start..<end))
                start = end
                if wavePages >= waveLimit || waveChunks >= Self.waveChunks {
                    waves.append([])
                    wavePages = 0
                    waveChunks = 0
                }
            } while start < chunksOf[index].upperBound
        }
        return waves
    }

    /// For each mapping, the range of its chunks in `owners` (the mapping of each chunk, in order).
    static func chunkRanges(_ owners: [Int], mappings: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(mappings)
        var cursor = 0
        for index in 0..<mappings {
            let start = cursor
            while cursor < owners.count && owners[cursor] == index { cursor += 1 }
            ranges.append(start..<cursor)
        }
        return ranges
    }

    /// Mappings at or above this address lie outside what pagemap covers ([vsyscall]).
    static let userSpaceEnd: UInt64 = 1 << 63

    /// Whether empty stretches of a mapping may be skipped with PAGEMAP_SCAN: not on device
    /// mappings (VM_PFNMAP and VM_IO pages are not walked by PAGEMAP_SCAN) or special ones.
    static func skipsEmpty(_ mapping: Mapping) -> Bool {
        mapping.kind != .special && !(mapping.kind == .file && mapping.path.hasPrefix("/dev/"))
    }
}

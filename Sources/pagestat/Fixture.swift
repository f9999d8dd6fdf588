import ArgumentParser
import CPagestat
import PageStat

#if canImport(Glibc)
import Glibc
#endif

extension Pagestat {
    /// A process with one of every layout the scanner must get right, for end-to-end tests.
    struct Fixture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Arrange every page layout in this process and wait (for tests).",
            discussion: """
            Maps, in this process: shared anonymous memory, a memfd, a /dev/shm file, a SysV \
            segment, private anonymous memory and a regular file, each PAGES pages, writes, \
            pwrite()s, pages out (MADV_PAGEOUT) and guards parts of them, prints one JSON line \
            with their addresses, and keeps them until standard input closes. Needs swap for the \
            paged-out parts.
            """,
            shouldDisplay: false
        )

        @Option(help: "Pages in each region (a multiple of 16).")
        var pages: Int = 64

        @Option(help: "Directory for the regular file (not tmpfs).")
        var fileDirectory: String = "/var/tmp"

        @Option(help: "Instead of the layouts, map this file (e.g. /proc/PID/fd/N) MAP_SHARED and read pages --read.")
        var map: String?

        @Option(help: "With --map: the pages to read, FIRST-END (end exclusive).")
        var read: String?

        @Option(help: ArgumentHelp("Instead of the layouts, map one memfd this many times, one page per mapping (see --object-pages).", valueName: "n"))
        var repeatedMappings: Int?

        @Option(help: ArgumentHelp("With --repeated-mappings: the memfd's pages (default: one per mapping); mapping i maps page i % PAGES. The first half of the pages is written, the first quarter paged out.", valueName: "pages"))
        var objectPages: Int?

        @Option(help: ArgumentHelp("Instead of the layouts, give hostile names (these bytes, in hex) to this process's comm, a memfd and two files in --file-directory.", valueName: "hex"))
        var hostileName: String?

        @Flag(help: "Instead of the layouts, map --pages pages of shared memory followed by a 16-page hole; unmap them on an 'unmap' line on standard input.")
        var vanish = false

        func run() throws {
            try reportingErrors { () throws(PageStatError) in
                if let map {
                    try mapOnly(map)
                } else if let repeatedMappings {
                    try mapRepeatedly(repeatedMappings, objectPages: objectPages ?? repeatedMappings)
                } else if let hostileName {
                    try hostileNames(hostileName)
                } else if vanish {
                    try vanishing()
                } else {
                    try arrange()
                }
            }
        }

        /// Names with every byte a hostile process may choose: the comm (prctl PR_SET_NAME, first
        /// 15 bytes), a memfd (mapped, `pages` pages, [0, pages/2) written), a tmpfs file `m`+NAME
        /// (mapped, the same) and a file `o`+NAME held open, never mapped ([0, 1) written).
        private func hostileNames(_ hex: String) throws(PageStatError) {
            let digits = Array(hex.utf8)
            guard digits.count % 2 == 0 else { throw .invalidInput("--hostile-name takes an even number of hex digits") }
            var name: [UInt8] = []
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else {
                    throw .invalidInput("--hostile-name: not hex")
                }
                name.append(byte)
            }
            guard !name.isEmpty, !name.contains(0), !name.contains(0x2f) else {
                throw .invalidInput("--hostile-name: the name must be non-empty, without NUL or '/'")
            }
            let cName = name.map { CChar(bitPattern: $0) } + [0]
            guard CPagestat_set_comm(cName) == 0 else { throw .system(call: "prctl(PR_SET_NAME)", errno: .init(rawValue: errno)) }
            let memfdFD = CPagestat_memfd_create(cName, 1 /* MFD_CLOEXEC */)
            guard memfdFD >= 0 else { throw .system(call: "memfd_create", errno: .init(rawValue: errno)) }
            defer { close(memfdFD) }
            guard ftruncate(memfdFD, off_t(pages * ProcFS.pageSize)) == 0 else {
                throw .system(call: "ftruncate", errno: .init(rawValue: errno))
            }
            let memfd = try ArrangedMemory(pages: pages, backing: .file(fd: memfdFD, shared: true))
            memfd.write(0..<pages / 2)
            let directory = NameBytes.bytes(of: fileDirectory) + [0x2f]
            let mappedPath = NameBytes.decode(directory + [0x6d] + name)  // "m" + name
            let mappedFD = try createFile(mappedPath)
            defer { close(mappedFD); _ = NameBytes.withCString(mappedPath) { unlink($0) } }
            let mapped = try ArrangedMemory(pages: pages, backing: .file(fd: mappedFD, shared: true))
            mapped.write(0..<pages / 2)
            let openPath = NameBytes.decode(directory + [0x6f] + name)  // "o" + name
            let openFD = try createFile(openPath)
            defer { close(openFD); _ = NameBytes.withCString(openPath) { unlink($0) } }
            var block = [UInt8](repeating: 0x11, count: ProcFS.pageSize)
            _ = block.withUnsafeMutableBytes { Glibc.pwrite(openFD, $0.baseAddress, $0.count, 0) }

            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.key("regions")
            json.beginObject()
            json.field("memfd", memfd.address)
            json.field("tmpfs", mapped.address)
            json.endObject()
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
        }

        /// `pages` pages of shared anonymous memory, one page in 512 written, then a 16-page hole
        /// (never mapped by anyone: it was part of the mapping and is unmapped at once). On a line
        /// `unmap` on standard input, unmaps the pages and answers `unmapped`; holds on until EOF.
        private func vanishing() throws(PageStatError) {
            let pageSize = ProcFS.pageSize
            guard let base = mmap(nil, (pages + 16) * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                  base != MAP_FAILED else {
                throw .system(call: "mmap", errno: .init(rawValue: errno))
            }
            munmap(base + pages * pageSize, 16 * pageSize)
            for page in stride(from: 0, to: pages, by: 512) {
                base.storeBytes(of: 0x5a, toByteOffset: page * pageSize, as: UInt8.self)
            }
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.field("start", UInt64(UInt(bitPattern: base)))
            json.endObject()
            writeOut(json.output + "\n")
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while Glibc.read(0, &byte, 1) > 0 {
                guard byte == 0x0a else { line.append(byte); continue }
                if line == Array("unmap".utf8) {
                    munmap(base, pages * pageSize)
                    writeOut("unmapped\n")
                }
                line = []
            }
        }

        /// One memfd mapped `count` times: pages [0, P/2) written (at least one), [0, P/4) paged out.
        private func mapRepeatedly(_ count: Int, objectPages: Int) throws(PageStatError) {
            let memory = try RepeatedMappings(mappings: count, objectPages: objectPages, name: "pagestat-repeated")
            let written = max(1, objectPages / 2)
            let swapped = objectPages / 4
            memory.write(0..<written)
            try memory.pageOut(0..<swapped)
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("mappings", count)
            json.field("pages", objectPages)
            json.field("written", written)
            json.field("paged_out", swapped)
            json.field("start", memory.address)
            json.field("memfd", "/proc/\(getpid())/fd/\(memory.fd)")
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
            withExtendedLifetime(memory) {}
        }

        /// Maps another process's object and reads some of its pages: a second mapper.
        private func mapOnly(_ path: String) throws(PageStatError) {
            let fd = open(path, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
            defer { close(fd) }
            var st = stat()
            fstat(fd, &st)
            let memory = try ArrangedMemory(pages: Int(st.st_size) / ProcFS.pageSize, backing: .file(fd: fd, shared: true))
            if let read {
                let bounds = read.split(separator: "-").compactMap { Int($0) }
                guard bounds.count == 2 else { throw .invalidInput("--read takes FIRST-END") }
                _ = memory.read(bounds[0]..<bounds[1])
            }
            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", memory.pages)
            json.field("mapped", memory.address)
            json.endObject()
            writeOut(json.output + "\n")
            waitForEOF()
        }

        private func waitForEOF() {
            var byte: UInt8 = 0
            while Glibc.read(0, &byte, 1) > 0 {}
        }

        private func arrange() throws(PageStatError) {
            let q = pages / 4
            // Shared anonymous: [0,q) written then paged out, [q,2q) written, rest untouched.
            let sharedAnon = try ArrangedMemory(pages: pages, backing: .sharedAnonymous)
            sharedAnon.write(0..<2 * q)
            try sharedAnon.pageOut(0..<q)
            // memfd: [0,q) pwrite only, [q,2q) written, [2q,3q) written then paged out, rest untouched.
            let memfd = try ArrangedMemory(pages: pages, backing: .memfd(name: "pagestat-fixture", shared: true))
            try arrangeShmemFile(memfd, q: q)
            // A /dev/shm (tmpfs) file, the same layout; unlinked right away, kept open by the mapping.
            let shmPath = "/dev/shm/pagestat-fixture-\(getpid())"
            let shmFD = try createFile(shmPath)
            defer { close(shmFD); unlink(shmPath) }
            let tmpfs = try ArrangedMemory(pages: pages, backing: .file(fd: shmFD, shared: true))
            try arrangeShmemFile(tmpfs, q: q)
            // A /dev/shm file held open but never mapped: [0,q) written with pwrite.
            let openPath = "/dev/shm/pagestat-fixture-open-\(getpid())"
            let openFD = try createFile(openPath)
            defer { close(openFD); unlink(openPath) }
            var openBlock = [UInt8](repeating: 0x11, count: ProcFS.pageSize)
            for page in 0..<q {
                openBlock[0] = UInt8(truncatingIfNeeded: page)
                _ = openBlock.withUnsafeBytes { pwrite(openFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }
            }
            // SysV shared memory: [0,q) written then paged out, [q,2q) written, rest untouched.
            let shmid = shmget(IPC_PRIVATE, pages * ProcFS.pageSize, IPC_CREAT | 0o600)
            guard shmid >= 0 else { throw .system(call: "shmget", errno: .init(rawValue: errno)) }
            guard let sysv = shmat(shmid, nil, 0), sysv != UnsafeMutableRawPointer(bitPattern: -1) else {
                shmctl(shmid, IPC_RMID, nil)
                throw .system(call: "shmat", errno: .init(rawValue: errno))
            }
            shmctl(shmid, IPC_RMID, nil)
            defer { shmdt(sysv) }
            for page in 0..<2 * q { sysv.storeBytes(of: 0x33, toByteOffset: page * ProcFS.pageSize, as: UInt8.self) }
            if madvise(sysv, q * ProcFS.pageSize, CPagestat_MADV_PAGEOUT) != 0 {
                throw .system(call: "madvise", errno: .init(rawValue: errno))
            }
            // Private anonymous: [0,q) written then paged out, [q,2q) written, [2q,3q) read (zero
            // page), [3q,3q+q/2) guard pages, rest untouched.
            let privateAnon = try ArrangedMemory(pages: pages, backing: .privateAnonymous)
            privateAnon.write(0..<2 * q)
            try privateAnon.pageOut(0..<q)
            _ = privateAnon.read(2 * q..<3 * q)
            try privateAnon.installGuard(3 * q..<3 * q + q / 2)
            // A regular file: [0,q) cached by pread, [2q,3q) mapped and read, the rest dropped from
            // the cache. Readahead is off (FADV_RANDOM, MADV_RANDOM) and the gaps keep fault-around
            // from mapping the pread pages.
            let filePath = "\(fileDirectory)/pagestat-fixture-\(getpid()).data"
            let fileFD = open(filePath, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
            guard fileFD >= 0 else { throw .system(call: "open \(filePath)", errno: .init(rawValue: errno)) }
            defer { close(fileFD); unlink(filePath) }
            var block = [UInt8](repeating: 0x77, count: ProcFS.pageSize)
            for page in 0..<pages {
                guard block.withUnsafeBytes({ pwrite(fileFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }) == ProcFS.pageSize else {
                    throw .system(call: "pwrite", errno: .init(rawValue: errno))
                }
            }
            fsync(fileFD)
            posix_fadvise(fileFD, 0, 0, POSIX_FADV_DONTNEED)
            posix_fadvise(fileFD, 0, 0, POSIX_FADV_RANDOM)
            for page in 0..<q {
                _ = block.withUnsafeMutableBytes { pread(fileFD, $0.baseAddress, $0.count, off_t(page * ProcFS.pageSize)) }
            }
            let file = try ArrangedMemory(pages: pages, backing: .file(fd: fileFD, shared: false))
            try file.advise(0..<pages, MADV_RANDOM)
            _ = file.read(2 * q..<3 * q)

            var json = JSONWriter()
            json.beginObject()
            json.field("pid", getpid())
            json.field("pages", pages)
            json.field("page_size", ProcFS.pageSize)
            json.key("regions")
            json.beginObject()
            json.field("shared-anon", sharedAnon.address)
            json.field("memfd", memfd.address)
            json.field("tmpfs", tmpfs.address)
            json.field("sysv", UInt64(UInt(bitPattern: sysv)))
            json.field("private-anon", privateAnon.address)
            json.field("file", file.address)
            json.endObject()
            json.key("paths")
            json.beginObject()
            json.field("memfd", "/proc/\(getpid())/fd/\(memfd.fd ?? -1)")
            json.field("tmpfs", shmPath)
            json.field("tmpfs-open", openPath)
            json.field("file", filePath)
            json.endObject()
            json.endObject()
            writeOut(json.output + "\n")
            // Hold everything until our parent closes standard input (or dies).
            waitForEOF()
        }

        /// A new file of `pages` pages (a hole), open read-write; the caller unlinks it.
        private func createFile(_ path: String) throws(PageStatError) -> Int32 {
            let fd = NameBytes.withCString(path) { open($0, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600) }
            guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
            guard ftruncate(fd, off_t(pages * ProcFS.pageSize)) == 0 else {
                let error = errno
                close(fd)
                _ = NameBytes.withCString(path) { unlink($0) }
                throw .system(call: "ftruncate \(path)", errno: .init(rawValue: error))
            }
            return fd
        }

        private func arrangeShmemFile(_ memory: ArrangedMemory, q: Int) throws(PageStatError) {
            try memory.pwrite(0..<q)
            memory.write(q..<3 * q)
            try memory.pageOut(2 * q..<3 * q)
        }
    }
}

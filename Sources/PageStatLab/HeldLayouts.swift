import CPagestat
import PageStat

#if canImport(Glibc)
import Glibc
#endif

/// The special layouts of `lab hold`, arranged in this process and held while the value lives.

/// Objects with hostile names (every byte a hostile process may choose but NUL and '/'): the
/// comm (prctl PR_SET_NAME, first 15 bytes), a memfd (mapped, `pages` pages, [0, pages/2)
/// written), a tmpfs file `m`+NAME (mapped, the same) and a file `o`+NAME held open, never
/// mapped ([0, 1) written). Both files are removed when it goes.
package final class HostileNamedObjects {
    package let memfd: ArrangedMemory
    package let mapped: ArrangedMemory
    private let descriptors: [Int32]
    private let paths: [String]

    package init(name: [UInt8], pages: Int, directory: String) throws(PageStatError) {
        let cName = name.map { CChar(bitPattern: $0) } + [0]
        guard CPagestat_set_comm(cName) == 0 else { throw .system(call: "prctl(PR_SET_NAME)", errno: .init(rawValue: errno)) }
        let memfdFD = CPagestat_memfd_create(cName, 1 /* MFD_CLOEXEC */)
        guard memfdFD >= 0 else { throw .system(call: "memfd_create", errno: .init(rawValue: errno)) }
        var descriptors = [memfdFD]
        var paths: [String] = []
        func undo() {
            for fd in descriptors { close(fd) }
            for path in paths { _ = NameBytes.withCString(path) { unlink($0) } }
        }
        do throws(PageStatError) {
            guard ftruncate(memfdFD, off_t(pages * ProcFS.pageSize)) == 0 else {
                throw .system(call: "ftruncate", errno: .init(rawValue: errno))
            }
            memfd = try ArrangedMemory(pages: pages, backing: .file(fd: memfdFD, shared: true))
            memfd.write(0..<pages / 2)
            let prefix = NameBytes.bytes(of: directory) + [0x2f]
            let mappedPath = NameBytes.decode(prefix + [0x6d] + name)  // "m" + name
            let mappedFD = try ArrangedLayout.createFile(mappedPath, pages: pages)
            descriptors.append(mappedFD)
            paths.append(mappedPath)
            mapped = try ArrangedMemory(pages: pages, backing: .file(fd: mappedFD, shared: true))
            mapped.write(0..<pages / 2)
            let openPath = NameBytes.decode(prefix + [0x6f] + name)  // "o" + name
            let openFD = try ArrangedLayout.createFile(openPath, pages: pages)
            descriptors.append(openFD)
            paths.append(openPath)
            let block = [UInt8](repeating: 0x11, count: ProcFS.pageSize)
            _ = block.withUnsafeBytes { Glibc.pwrite(openFD, $0.baseAddress, $0.count, 0) }
        } catch {
            undo()
            throw error
        }
        self.descriptors = descriptors
        self.paths = paths
    }

    deinit {
        for fd in descriptors { close(fd) }
        for path in paths { _ = NameBytes.withCString(path) { unlink($0) } }
    }
}

/// `pages` pages of shared anonymous memory, one page in 512 written, then a 16-page hole (never
/// mapped by anyone: it was part of the mapping and is unmapped at once); `unmap()` unmaps the
/// pages.
package final class VanishingMapping {
    private let base: UnsafeMutableRawPointer
    package let pages: Int
    private var mapped = true
    package var start: UInt64 { UInt64(UInt(bitPattern: base)) }

    package init(pages: Int) throws(PageStatError) {
        let pageSize = ProcFS.pageSize
        guard let base = mmap(nil, (pages + 16) * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              base != MAP_FAILED else {
            throw .system(call: "mmap", errno: .init(rawValue: errno))
        }
        munmap(base + pages * pageSize, 16 * pageSize)
        for page in stride(from: 0, to: pages, by: 512) {
            base.storeBytes(of: 0x5a, toByteOffset: page * pageSize, as: UInt8.self)
        }
        self.base = base
        self.pages = pages
    }

    /// munmap(2) of the pages.
    package func unmap() {
        guard mapped else { return }
        munmap(base, pages * ProcFS.pageSize)
        mapped = false
    }

    deinit { unmap() }
}

/// Pages `pages` of a file (such as /proc/PID/fd/N of another process's object) mapped
/// MAP_SHARED, read-only, none of them touched: a second mapper.
package final class MappedFilePages {
    private let base: UnsafeMutableRawPointer
    private let length: Int
    package var address: UInt64 { UInt64(UInt(bitPattern: base)) }

    /// Maps `pages` of `path`; when they are nil (not given right), throws `invalid` once the
    /// file has opened.
    package init(path: String, pages: Range<Int>?, invalid: @autoclosure () -> PageStatError) throws(PageStatError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
        defer { close(fd) }
        guard let pages else { throw invalid() }
        let pageSize = ProcFS.pageSize
        length = pages.count * pageSize
        guard let base = mmap(nil, length, PROT_READ, MAP_SHARED, fd, off_t(pages.lowerBound * pageSize)), base != MAP_FAILED else {
            throw .system(call: "mmap", errno: .init(rawValue: errno))
        }
        self.base = base
    }

    deinit { munmap(base, length) }
}

/// A whole file mapped MAP_SHARED (`ArrangedMemory`), its descriptor closed when it goes.
package final class MappedFile {
    package let memory: ArrangedMemory
    private let fd: Int32

    package init(path: String) throws(PageStatError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .system(call: "open \(path)", errno: .init(rawValue: errno)) }
        var st = stat()
        fstat(fd, &st)
        do throws(PageStatError) {
            memory = try ArrangedMemory(pages: Int(st.st_size) / ProcFS.pageSize, backing: .file(fd: fd, shared: true))
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit {
        withExtendedLifetime(memory) {}
        close(fd)
    }
}

/// vfork(2) of a child that shares this process's memory, waits for a byte on standard input and
/// then executes this program again with the same arguments but `--vfork-exec again`.
package enum VforkExec {
    /// Starts the child; its pid. Its standard output goes to /dev/null.
    package static func startAgain() throws(PageStatError) -> pid_t {
        // The same arguments, the same lengths: only "first" becomes "again".
        let argc = Int(CommandLine.argc)
        var argv: [UnsafeMutablePointer<CChar>?] = (0..<argc).map { strdup(CommandLine.unsafeArgv[$0]!) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        for index in 1..<argc {
            let argument = String(cString: argv[index]!)
            if argument == "--vfork-exec=first" || (argument == "first" && String(cString: argv[index - 1]!) == "--vfork-exec") {
                _ = strcpy(argv[index]! + argument.utf8.count - 5, "again")
            }
        }
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(null) }
        // The path it was started by (the same string on the new stack), or, found through
        // PATH, the executable itself.
        let path = strchr(argv[0]!, 0x2f) != nil ? String(cString: argv[0]!) : "/proc/self/exe"
        let child = CPagestat_vfork_exec_after_byte(0, null, path, &argv)
        guard child > 0 else { throw .system(call: "vfork", errno: .init(rawValue: errno)) }
        return child
    }
}

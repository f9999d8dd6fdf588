import ArgumentParser
import PageStat
import PageStatRender
import CPagestat

#if canImport(Glibc)
import Glibc
#endif

@main
struct Pagestat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pagestat",
        abstract: "The true state of every page of a process, swapped shared memory included.",
        discussion: """
        /proc/PID/pagemap reads zero for a page of shared memory (MAP_SHARED anonymous memory, \
        memfd, tmpfs and /dev/shm files, SysV shm) that was swapped out, exactly as for a page \
        never touched. pagestat joins the page table with each shared object's page cache \
        (lseek SEEK_DATA/SEEK_HOLE, mincore, cachestat through /proc/PID/map_files) and reports \
        every page as present, swapped, cached (in memory, not mapped here) or none.

        It reads metadata only: the inspected process's memory is never read, faulted or \
        swapped in. Run as root for PFNs, swap locations and the shared-memory file side.

        Start with `pagestat demo`.

        Exit codes: 0 ok, 1 system error, 3 no such process, 4 permission denied, \
        5 range not mapped, 6 the process exited, executed a new program or replaced a mapping being read during the scan, \
        7 kernel lacks an interface, 8 process has no address space (kernel thread), \
        9 an object changed while it was read, 10 doctor --verify found a wrong page, \
        11 a swap area whose slots cannot be read correctly (its backend), 64 usage error, \
        74 output could not be written (a full disk: one line on stderr; a reader that goes away \
        ends pagestat by SIGPIPE instead, quietly).
        """,
        version: pagestatVersion,
        subcommands: [Show.self, Summary.self, Map.self, Top.self, Objects.self, File.self, Raw.self, Snapshot.self, Doctor.self, Lab.self, Bench.self, Demo.self]
    )

    /// The arguments with every byte kept (`NameBytes`), so a file name that is not UTF-8 can be
    /// named on the command line; `CommandLine.arguments` would replace such bytes.
    static func main() {
        // A scan allocates and frees its runs a wave at a time: keep freed memory in the heap
        // for the next wave instead of returning it to the kernel and faulting it in again
        // (glibc trims the heap top at 128 KiB and serves large blocks with mmap). The peak
        // stays what one wave needs.
        CPagestat_keep_heap(64 << 20, 128 << 20)
        StandardOutput.install()
        let arguments = (1..<Int(CommandLine.argc)).map { NameBytes.decode(cString: CommandLine.unsafeArgv[$0]!) }
        main(arguments)
    }
}

/// Exit codes, one per kind of failure.
enum ExitStatus {
    static func code(for error: PageStatError) -> Int32 {
        switch error {
        case .system: 1
        case .noSuchProcess: 3
        case .permissionDenied: 4
        case .rangeNotMapped: 5
        case .processExited, .addressSpaceReplaced, .mappingReplaced: 6
        case .unsupported: 7
        case .noAddressSpace: 8
        case .objectChanged: 9
        case .swapAreaRefused: 11
        case .invalidInput: 64
        }
    }
}

/// Runs `body`; a `PageStatError` becomes one line on stderr and its exit code.
func reportingErrors(_ body: () throws(PageStatError) -> Void) throws {
    do {
        try body()
    } catch {
        printError("pagestat: \(escapedName(error.description))")
        throw ExitCode(ExitStatus.code(for: error))
    }
}

func printError(_ line: String, newline: Bool = true) {
    var text = newline ? line + "\n" : line
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Writes to stdout in one go (reports can be large).
func writeOut(_ text: String) {
    var text = text
    text.withUTF8 { writeOut(UnsafeRawBufferPointer($0)) }
}

/// Writes bytes to stdout, all of them unless output is lost (`StandardOutput`: the exit says so).
func writeOut(_ bytes: UnsafeRawBufferPointer) {
    StandardOutput.write(bytes)
}

extension OutputFormat: ExpressibleByArgument {}

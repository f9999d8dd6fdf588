import CPagestat
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// errno of standard output's first failed write(2), 0 while none failed.
private let firstWriteError = Atomic<Int32>(0)

/// Standard output that cannot be lost silently, as gnulib's close_stdout keeps it: the first
/// write(2) error is kept and decides the exit. A write error (ENOSPC, EIO, ...) is one line on
/// stderr and exit 74 (EX_IOERR); a reader that went away (EPIPE) ends the process by SIGPIPE,
/// quietly, as a shell pipeline expects. SIGPIPE is ignored while the command runs, so its
/// cleanups (temporary swap, cgroups, sysctls) run before that.
enum StandardOutput {
    /// EX_IOERR of sysexits.h.
    static let ioErrorStatus: Int32 = 74

    /// Ignores SIGPIPE (a write to a closed pipe fails with EPIPE) and checks standard output
    /// at exit.
    static func install() {
        signal(SIGPIPE, SIG_IGN)
        atexit { StandardOutput.finish() }
    }

    /// Whether output was lost: a command stops its work here (returns or breaks) and the exit
    /// says why.
    static var lost: Bool { firstWriteError.load(ordering: .relaxed) != 0 }

    /// Writes all of `bytes` with write(2); false once output is lost (nothing more is written).
    @discardableResult
    static func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !lost else { return false }
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                record(errno)
                return false
            }
            offset += written
        }
        return true
    }

    /// For a stream that holds nothing to clean up (`show`, `map`): once output is lost, the
    /// process ends at once instead of scanning on for no reader (the exit says why).
    static func writeOrEnd(_ text: String) {
        var text = text
        text.withUTF8 { writeOrEnd(UnsafeRawBufferPointer($0)) }
    }

    static func writeOrEnd(_ bytes: UnsafeRawBufferPointer) {
        if !write(bytes) { exit(ioErrorStatus) }
    }

    private static func record(_ error: Int32) {
        _ = firstWriteError.compareExchange(expected: 0, desired: error == 0 ? EIO : error, ordering: .relaxed)
    }

    /// At exit: flushes stdio's stdout (help and version text), then a write error is one line
    /// and exit 74, a reader that went away is death by SIGPIPE.
    static func finish() {
        let stdio = CPagestat_flush_stdout()
        if stdio != 0 { record(stdio) }
        let error = firstWriteError.load(ordering: .relaxed)
        guard error != 0 else { return }
        // What the command changed on the host is put back before the exit below skips the
        // rest of the atexit hooks (`UndoOnExit`).
        CPagestat_undo_run_all()
        if error == EPIPE {
            signal(SIGPIPE, SIG_DFL)
            var pipe = sigset_t()
            sigemptyset(&pipe)
            sigaddset(&pipe, SIGPIPE)
            sigprocmask(SIG_UNBLOCK, &pipe, nil)
            raise(SIGPIPE)
            _exit(128 + SIGPIPE)
        }
        printError("pagestat: write error: \(String(cString: strerror(error)))")
        _exit(ioErrorStatus)
    }
}

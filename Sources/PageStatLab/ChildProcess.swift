import PageStat
#if canImport(Glibc)
import Glibc
#endif
import CPagestat
import SystemPackage

/// A child process started with posix_spawn(3), for `bench`: its stdout as a pipe (or
/// /dev/null), its stdin as a pipe we hold (so it sees EOF when we go), and wait4(2)'s rusage.
package final class ChildProcess {
    package let pid: pid_t
    private var stdoutFD: Int32
    private var stdinFD: Int32
    private var reaped = false

    /// Starts `arguments[0]` (a path) with `arguments`; `captureOutput` pipes stdout to us.
    package init(_ arguments: [String], captureOutput: Bool) throws(PageStatError) {
        var outPipe: [Int32] = [-1, -1]
        var inPipe: [Int32] = [-1, -1]
        guard CPagestat_pipe_cloexec(&inPipe) == 0 else { throw .system(call: "pipe2", errno: Errno(rawValue: errno)) }
        if captureOutput {
            guard CPagestat_pipe_cloexec(&outPipe) == 0 else { throw .system(call: "pipe2", errno: Errno(rawValue: errno)) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        if captureOutput {
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let result = posix_spawn(&child, arguments[0], &actions, nil, argv, environ)
        close(inPipe[0])
        if captureOutput { close(outPipe[1]) }
        guard result == 0 else {
            close(inPipe[1])
            if captureOutput { close(outPipe[0]) }
            throw .system(call: "posix_spawn \(arguments[0])", errno: Errno(rawValue: result))
        }
        pid = child
        stdinFD = inPipe[1]
        stdoutFD = captureOutput ? outPipe[0] : -1
    }

    /// One line of the child's stdout (without the newline); nil at EOF.
    package func readLine() -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while read(stdoutFD, &byte, 1) == 1 {
            if byte == 0x0a { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// Closes the child's standard input: it reads EOF.
    package func closeInput() { if stdinFD >= 0 { close(stdinFD); stdinFD = -1 } }

    /// Sends `signal` to the child.
    package func signal(_ signal: Int32) { if !reaped { kill(pid, signal) } }

    /// Waits for the child: its exit status and peak resident set size in KiB (ru_maxrss).
    @discardableResult
    package func wait() -> (status: Int32, maxRSSKiB: Int) {
        if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        reaped = true
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, Int(usage.ru_maxrss))
    }

    deinit {
        if !reaped {
            kill(pid, SIGTERM)
            wait()
        }
        if stdoutFD >= 0 { close(stdoutFD) }
        if stdinFD >= 0 { close(stdinFD) }
    }
}

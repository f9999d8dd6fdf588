import ArgumentParser

/// The process a command inspects: `pagestat show 1234`, `-p 1234` or `--pid 1234`, as pmap,
/// smem and ps take it.
struct ProcessOption: ParsableArguments {
    @Argument(help: ArgumentHelp("The process (or give it with -p/--pid).", valueName: "pid"))
    var positional: Int32?

    @Option(name: [.customShort("p"), .customLong("pid")], help: ArgumentHelp("The process.", valueName: "pid"))
    var option: Int32?

    /// The pid, given exactly once (both forms naming the same pid is accepted).
    var pid: Int32 {
        get throws { try Self.resolve(positional, option) }
    }

    /// The pid of the positional form or of -p/--pid.
    static func resolve(_ positional: Int32?, _ option: Int32?) throws -> Int32 {
            switch (positional, option) {
            case (let a?, let b?) where a != b:
                throw ValidationError("two processes given: \(a) and --pid \(b); name one")
            case (let a?, _): return a
            case (nil, let b?): return b
            case (nil, nil): throw ValidationError("missing the process: give its pid (e.g. `1234` or `--pid 1234`)")
            }
    }

    mutating func validate() throws {
        _ = try pid
    }
}

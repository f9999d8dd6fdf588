import ArgumentParser
import PageStat

/// `--engine`: which engine asks shared objects' page caches (see `FileSideEngineChoice`).
struct EngineOption: ParsableArguments {
    @Option(help: ArgumentHelp("""
        How the page cache of shared objects is asked: auto (the BPF engine for shared \
        memory wherever it loads, syscalls for regular files; where it cannot load, syscalls \
        with a note that says why), bpf (the page-cache xarray through a BPF iterator: swap locations of \
        swapped shared pages; root, the kernel's BTF and libbpf.so.1; exit 7 with the reason \
        where it cannot load), or syscalls (lseek, cachestat, mincore: no swap locations for \
        shared memory).
        """, valueName: "engine"))
    var engine: FileSideEngineChoice = .auto

    /// The engine asked for; `bpf` loaded first, so that a command that writes as it goes fails
    /// (exit 7, with the reason) before its first line when the BPF engine cannot run.
    func loaded() throws(PageStatError) -> FileSideEngineChoice {
        if engine == .bpf { _ = try XArrayWalker.shared() }
        return engine
    }
}

extension FileSideEngineChoice: ExpressibleByArgument {}

/// `--engine` for the commands that count whole objects (`file`, `objects`).
struct CountingEngineOption: ParsableArguments {
    @Option(help: ArgumentHelp("""
        How whole objects' pages are counted: auto (the BPF engine for shared memory \
        wherever it loads, cachestat(2) for regular files unless it is missing, before Linux \
        6.5), bpf (one walk of each object's page-cache \
        xarray through a BPF iterator: swap locations of swapped tmpfs pages in `file --pages`; \
        root, the kernel's BTF and libbpf.so.1; exit 7 with the reason where it cannot load), \
        or syscalls (cachestat, lseek and mincore only).
        """, valueName: "engine"))
    var engine: FileSideEngineChoice = .auto
}

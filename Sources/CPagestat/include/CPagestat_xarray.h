// The interface between BPF/xarray.bpf.c (kernel side) and XArrayWalker.swift (user side).
//
// Both sides include this file: the BPF program compiled with clang -target bpfel, the shim with
// the host compiler. It uses only fixed-width integer types, which the includer defines
// (stdint.h in the shim, BPF/bpf_minimal.h in the program), and every size is checked.
#ifndef CPAGESTAT_XARRAY_H
#define CPAGESTAT_XARRAY_H

// Runs one pass of the walk can report (a power of two: the program masks its index with it).
#define CPAGESTAT_XW_MAX_RUNS 32768

// What a run's pages hold in the page-cache xarray.
enum {
    CPAGESTAT_XW_HOLE = 0,     // no entry (or XA_ZERO_ENTRY, which lookups read as none)
    CPAGESTAT_XW_FOLIO = 1,    // a folio: the page is in memory (on shmem, maybe in the swap cache)
    CPAGESTAT_XW_SWAP = 2,     // a value entry on shmem: a swap entry; `swap` is the first page's
    CPAGESTAT_XW_SHADOW = 3,   // a value entry on any other file: a workingset shadow
};

// How a pass ended.
enum {
    CPAGESTAT_XW_NOT_FOUND = 0, // the program never saw the descriptor (left as user space set it)
    CPAGESTAT_XW_DONE = 1,      // runs cover [first, next) and next == end
    CPAGESTAT_XW_MORE = 2,      // runs cover [first, next): the run buffer or the loop budget ran out
    CPAGESTAT_XW_RETRY = 3,     // a node was being freed under us (XA_RETRY_ENTRY at next): walk again from next
    CPAGESTAT_XW_BAD_ENTRY = 4, // an entry the program does not know, at index next: `bad_entry`
};

// Written by user space before each pass.
struct CPagestat_xw_args {
    uint64_t first;       // first page index to report
    uint64_t end;         // one past the last
    int32_t tgid;         // the process whose descriptor table holds fd (getpid())
    uint32_t fd;          // the descriptor of the object
    uint32_t max_runs;    // at most CPAGESTAT_XW_MAX_RUNS
    uint32_t max_nodes;   // bpf_loop budget: xarray nodes visited per pass
};

// Written by the program.
struct CPagestat_xw_result {
    uint32_t status;      // CPAGESTAT_XW_*
    uint32_t runs;        // records written to `run`
    uint64_t next;        // where the next pass starts (== end when DONE)
    uint64_t s_magic;     // the object's super_block s_magic (TMPFS_MAGIC: value entries are swap)
    uint64_t nodes;       // xarray nodes read in this pass
    uint64_t bad_entry;   // the unknown entry, with BAD_ENTRY
};

// One run: pages [first, first + pages) of one kind; for SWAP, `swap` is the swp_entry_t value
// (type << 58 | offset) of the first page, and the next pages follow it one offset each.
struct CPagestat_xw_run {
    uint64_t first;
    uint64_t pages;
    uint64_t kind;
    uint64_t swap;
};

// The value of the one-element, mmap-able array map `xw_io`: user space and the program share it.
// (Hidden from Swift, which would import the array as a tuple of 32768 elements: Swift reaches
// its parts through CPagestat_xw_loaded's pointers.)
#if !defined(__swift__)
struct CPagestat_xw_io {
    struct CPagestat_xw_args args;
    struct CPagestat_xw_result result;
    struct CPagestat_xw_run run[CPAGESTAT_XW_MAX_RUNS];
};

_Static_assert(sizeof(struct CPagestat_xw_args) == 32, "xw_args");
_Static_assert(sizeof(struct CPagestat_xw_result) == 40, "xw_result");
_Static_assert(sizeof(struct CPagestat_xw_run) == 32, "xw_run");
_Static_assert(sizeof(struct CPagestat_xw_io) == 72 + 32 * CPAGESTAT_XW_MAX_RUNS, "xw_io");
#endif

#endif

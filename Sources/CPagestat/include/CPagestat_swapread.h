// What SwapSlotReader needs from C: FIEMAP (linux/fiemap.h's ioctl number is a function-like
// macro and struct fiemap ends in a flexible array) and the loader of the BPF program
// that reads swap areas' slot states (BPF/swapslots.bpf.c, a task_file iterator).
#ifndef CPAGESTAT_SWAPREAD_H
#define CPAGESTAT_SWAPREAD_H

#include <stddef.h>
#include <stdint.h>
#include "CPagestat_swapslots.h"

// FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap).
static const unsigned long CPagestat_FS_IOC_FIEMAP = 0xC020660BUL;
// fiemap_extent.fe_flags (linux/fiemap.h).
static const uint32_t CPagestat_FIEMAP_EXTENT_LAST = 0x00000001;
static const uint32_t CPagestat_FIEMAP_EXTENT_UNKNOWN = 0x00000002;
static const uint32_t CPagestat_FIEMAP_EXTENT_DELALLOC = 0x00000004;
static const uint32_t CPagestat_FIEMAP_EXTENT_ENCODED = 0x00000008;
static const uint32_t CPagestat_FIEMAP_EXTENT_NOT_ALIGNED = 0x00000100;
static const uint32_t CPagestat_FIEMAP_EXTENT_DATA_INLINE = 0x00000200;
static const uint32_t CPagestat_FIEMAP_EXTENT_UNWRITTEN = 0x00000800;

struct CPagestat_fiemap_extent {
    uint64_t fe_logical;
    uint64_t fe_physical;
    uint64_t fe_length;
    uint64_t fe_reserved64[2];
    uint32_t fe_flags;
    uint32_t fe_reserved[3];
};

// struct fiemap with room for CPAGESTAT_FIEMAP_EXTENTS extents.
#define CPAGESTAT_FIEMAP_EXTENTS 256
struct CPagestat_fiemap {
    uint64_t fm_start;
    uint64_t fm_length;
    uint32_t fm_flags;
    uint32_t fm_mapped_extents;
    uint32_t fm_extent_count;
    uint32_t fm_reserved;
    struct CPagestat_fiemap_extent fm_extents[CPAGESTAT_FIEMAP_EXTENTS];
};
_Static_assert(sizeof(struct CPagestat_fiemap_extent) == 56, "fiemap_extent is 56 bytes");
_Static_assert(sizeof(struct CPagestat_fiemap) == 32 + 56 * CPAGESTAT_FIEMAP_EXTENTS, "fiemap header is 32 bytes");

/// The program's arrays (too long for Swift to import as tuples).
static inline const uint8_t *CPagestat_ss_swap_map(const struct CPagestat_ss_io *io) { return io->swap_map; }
static inline const uint64_t *CPagestat_ss_zeromap(const struct CPagestat_ss_io *io) { return io->zeromap; }

/// ioctl(fd, FS_IOC_FIEMAP, map): 0 or -1 with errno.
int CPagestat_fiemap(int fd, struct CPagestat_fiemap *map);

/// A loaded and attached slot-state reader.
struct CPagestat_ss_loaded {
    /// The shared map value `ss_io`, mmap()ed read-write: arguments in, areas and slots out.
    struct CPagestat_ss_io *io;
    /// The iterator link: bpf_iter_create(link_fd) starts a run.
    int link_fd;
    /// Why the per-cpu route is not taken (args.percpu_delta is 0), or empty.
    char percpu_note[160];
};

/// Loads BPF/swapslots.bpf.o (embedded), attaches its iter/task_file program filtered to process
/// `pid` and maps its `ss_io` map; sets args.cpus (possible CPUs) and args.percpu_delta (from
/// vmlinux BTF). 0, or -1 with a one-line reason. Not thread-safe: call it once.
int CPagestat_ss_load(int pid, struct CPagestat_ss_loaded *loaded, char *reason, size_t reason_size);

/// Runs the iterator once (bpf_iter_create, read to the end, close). 0, or -errno.
int CPagestat_ss_run(const struct CPagestat_ss_loaded *loaded);

#endif

// The interface between BPF/swapslots.bpf.c (kernel side) and SwapSlotReader (user side).
//
// Both sides include this file: the BPF program compiled with clang -target bpfel, the shim with
// the host compiler. It uses only fixed-width integer types, which the includer defines.
#ifndef CPAGESTAT_SWAPSLOTS_H
#define CPAGESTAT_SWAPSLOTS_H

// Slots one run of the iterator can report states for (a multiple of 512).
#define CPAGESTAT_SS_MAX_SLOTS 32768
// Swap areas a kernel can have (MAX_SWAPFILES is at most 32).
#define CPAGESTAT_SS_MAX_AREAS 32
// CPUs whose per-cpu swap cluster the program looks at.
#define CPAGESTAT_SS_MAX_CPUS 8192

// How an area's swap_info_struct was reached (CPagestat_ss_area.reached, a bit mask).
#define CPAGESTAT_SS_BY_HOLDER 1   // the bd_holder of a swap block device the caller opened (up to 6.9)
#define CPAGESTAT_SS_BY_PERCPU 2   // a CPU's percpu_swap_cluster (6.15+, non-rotational areas)
#define CPAGESTAT_SS_BY_LIST 4     // the list of active areas (swap_active_head), from another area

// Written by user space before it runs the iterator.
struct CPagestat_ss_args {
    int32_t tgid;          // the calling process (its files are iterated)
    int32_t type;          // the area whose slot states are copied (-1: none)
    uint64_t offset;       // the first slot
    uint32_t count;        // slots, at most CPAGESTAT_SS_MAX_SLOTS
    uint32_t cpus;         // possible CPUs (0: the per-cpu route is not taken)
    // &percpu_swap_cluster - &runqueues, from vmlinux BTF's DATASEC ".data..percpu" (the same
    // difference on every CPU); 0: not known, the per-cpu route is not taken.
    int64_t percpu_delta;
};

// One swap area: its swap_info_struct, validated.
struct CPagestat_ss_area {
    uint64_t ino;          // swap_file->f_inode->i_ino
    uint32_t dev;          // swap_file->f_inode->i_sb->s_dev (the kernel's MKDEV: major << 20 | minor)
    uint32_t max;          // max: slots in the area, header included
    int32_t type;          // type: the swap type swap entries name
    uint32_t seen;         // 1 when the program reached it during this run
    uint32_t has_zeromap;  // the kernel has swap_info_struct.zeromap (6.12+) and it is allocated
    uint32_t reached;      // CPAGESTAT_SS_BY_* bits
};

// What the run found, for the reason when no area was reached.
struct CPagestat_ss_result {
    uint32_t block_files;  // block-device files of the caller looked at
    uint32_t holder_si;    // ... whose bd_holder is a swap_info_struct
    uint32_t cpus_read;    // CPUs whose percpu_swap_cluster was read
    uint32_t percpu_si;    // valid swap_info_structs found there
    uint32_t no_percpu;    // 1: this kernel has no task->se.cfs_rq, or no percpu_swap_cluster
    uint32_t walked;       // 1: the list of active areas was walked to its end
    uint32_t copied;       // slots of args.type whose swap_map bytes (and zeromap bits) were copied
    uint32_t has_zeromap;  // zeromap words were copied
};

// Written by the program: the areas, and for args.type the raw state of the slots asked for.
struct CPagestat_ss_io {
    struct CPagestat_ss_args args;
    struct CPagestat_ss_result result;
    struct CPagestat_ss_area area[CPAGESTAT_SS_MAX_AREAS];
    // zeromap words from word args.offset / 64 on: bit (slot % 64) of word (slot / 64).
    uint64_t zeromap[CPAGESTAT_SS_MAX_SLOTS / 64 + 64];
    // swap_map[args.offset ..< args.offset + copied]: the slot's use count and SWAP_HAS_CACHE.
    uint8_t swap_map[CPAGESTAT_SS_MAX_SLOTS];
};

#endif

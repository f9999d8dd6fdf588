// The interface between BPF/swapslots.bpf.c (kernel side) and SwapSlotReader (user side), and the
// FIEMAP ioctl that maps a swap file's offsets to its device's blocks.
//
// Both sides include this file: the BPF program compiled with clang -target bpfel, the shim with
// the host compiler. It uses only fixed-width integer types, which the includer defines.
#ifndef CPAGESTAT_SWAPSLOTS_H
#define CPAGESTAT_SWAPSLOTS_H

// Slots one read of /proc/swaps can report states for (a multiple of 512).
#define CPAGESTAT_SS_MAX_SLOTS 32768
// Swap areas a kernel can have (MAX_SWAPFILES is at most 32).
#define CPAGESTAT_SS_MAX_AREAS 32

// Written by user space before it reads /proc/swaps.
struct CPagestat_ss_args {
    int32_t tgid;       // only this process's reads of /proc/swaps are recorded
    int32_t type;       // the area whose slot states are copied (-1: none)
    uint64_t offset;    // the first slot
    uint32_t count;     // slots, at most CPAGESTAT_SS_MAX_SLOTS
    uint32_t pad;
};

// One swap area as swap_show() saw it: its swap_info_struct.
struct CPagestat_ss_area {
    uint64_t ino;          // swap_file->f_inode->i_ino
    uint32_t dev;          // swap_file->f_inode->i_sb->s_dev (the kernel's MKDEV: major << 20 | minor)
    uint32_t max;          // max: slots in the area, header included
    int32_t type;          // type: the swap type swap entries name
    uint32_t seen;         // 1 when swap_show() ran for it during this read
    uint32_t has_zeromap;  // the kernel has swap_info_struct.zeromap (6.12+) and it is allocated
    uint32_t pad;
};

// Written by the program: the areas, and for args.type the raw state of the slots asked for.
struct CPagestat_ss_io {
    struct CPagestat_ss_args args;
    struct CPagestat_ss_area area[CPAGESTAT_SS_MAX_AREAS];
    uint32_t copied;       // slots of args.type whose swap_map bytes (and zeromap bits) were copied
    uint32_t has_zeromap;  // zeromap words were copied
    // zeromap words from word args.offset / 64 on: bit (slot % 64) of word (slot / 64).
    uint64_t zeromap[CPAGESTAT_SS_MAX_SLOTS / 64 + 64];
    // swap_map[args.offset ..< args.offset + copied]: the slot's use count and SWAP_HAS_CACHE.
    uint8_t swap_map[CPAGESTAT_SS_MAX_SLOTS];
};

#endif

// Reads swap areas' slot states for SwapSlotReader (Sources/PageStat/Kernel/SwapSlotStates.swift).
//
// For a kernel developer: an fentry program on swap_show() (mm/swapfile.c), which the kernel
// calls once per swap area, with that area's swap_info_struct, while /proc/swaps is read, under
// swapon_mutex (so the area and its bitmaps cannot go away). User space writes the range it wants
// into the shared map `ss_io` and reads /proc/swaps; the program acts only for that process's
// reads (the tgid). For every area it records the swap type, the swap file's inode (to match the
// line of /proc/swaps: swap_info[] is not reachable otherwise, as it is static and this kernel
// lists no data symbols in kallsyms) and its size; for the area asked for it copies
//   - swap_map[offset ..< offset + count]: per slot the use count, and SWAP_HAS_CACHE (0x40)
//     while a folio for the slot is in the swap cache (being written back, or not yet freed);
//   - the zeromap words covering the range (6.12+: a page that was all zeros when it was swapped
//     out is only a bit here; its slot was never written).
// It reads with bpf_probe_read_kernel() only: nothing is locked, referenced or written.
//
// Build: Scripts/build-bpf.sh (it builds this object beside xarray.bpf.o and embeds it in the shim
// as Sources/CPagestat/swapslots_bpf_object.h).

#include "bpf_minimal.h"
typedef __u8 uint8_t;   // for CPagestat_swapslots.h (bpf_minimal.h defines the wider ones)
#include "CPagestat_swapslots.h"

char LICENSE[] SEC("license") = "GPL";

struct super_block {
    unsigned int s_dev;
} __attribute__((preserve_access_index));

struct inode {
    unsigned long i_ino;
    struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
    struct inode *f_inode;
} __attribute__((preserve_access_index));

struct swap_info_struct {
    signed char type;
    unsigned int max;
    unsigned char *swap_map;
    unsigned long *zeromap;
    struct file *swap_file;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct CPagestat_ss_io);
} ss_io SEC(".maps");

static long (*bpf_get_current_pid_tgid)(void) = (void *)14;

#define SS_CHUNK 512

SEC("fentry/swap_show")
int ss_swap_show(__u64 *ctx) {
    struct swap_info_struct *si = (struct swap_info_struct *)ctx[1];
    __u32 key = 0;
    struct CPagestat_ss_io *io = bpf_map_lookup_elem(&ss_io, &key);
    if (!io || (__s32)(bpf_get_current_pid_tgid() >> 32) != io->args.tgid)
        return 0;
    if ((__u64)si == 1)   // SEQ_START_TOKEN: the header line
        return 0;

    signed char type = -1;
    unsigned int max = 0;
    struct file *file = 0;
    struct inode *inode = 0;
    struct super_block *sb = 0;
    unsigned long ino = 0;
    unsigned int dev = 0;
    unsigned long *zeromap = 0;
    unsigned char *swap_map = 0;
    bpf_probe_read_kernel(&type, sizeof(type), &si->type);
    bpf_probe_read_kernel(&max, sizeof(max), &si->max);
    bpf_probe_read_kernel(&file, sizeof(file), &si->swap_file);
    bpf_probe_read_kernel(&swap_map, sizeof(swap_map), &si->swap_map);
    if (__builtin_preserve_field_info(si->zeromap, 2))   // BPF_FIELD_EXISTS: 6.12+
        bpf_probe_read_kernel(&zeromap, sizeof(zeromap), &si->zeromap);
    if (file)
        bpf_probe_read_kernel(&inode, sizeof(inode), &file->f_inode);
    if (inode) {
        bpf_probe_read_kernel(&ino, sizeof(ino), &inode->i_ino);
        bpf_probe_read_kernel(&sb, sizeof(sb), &inode->i_sb);
    }
    if (sb)
        bpf_probe_read_kernel(&dev, sizeof(dev), &sb->s_dev);
    if (type < 0 || type >= CPAGESTAT_SS_MAX_AREAS)
        return 0;

    struct CPagestat_ss_area *area = &io->area[type & (CPAGESTAT_SS_MAX_AREAS - 1)];
    area->ino = ino;
    area->dev = dev;
    area->max = max;
    area->type = type;
    area->seen = 1;
    area->has_zeromap = zeromap != 0;

    if (type != io->args.type || !swap_map)
        return 0;
    __u64 offset = io->args.offset;
    __u64 count = io->args.count;
    if (count > CPAGESTAT_SS_MAX_SLOTS)
        count = CPAGESTAT_SS_MAX_SLOTS;
    if (offset >= max)
        return 0;
    if (count > max - offset)
        count = max - offset;

    // swap_map bytes, in chunks; the last one only up to the area's end (it is vmalloc()ed).
    for (__u32 i = 0; i < CPAGESTAT_SS_MAX_SLOTS / SS_CHUNK; i++) {
        __u64 done = (__u64)i * SS_CHUNK;
        if (done >= count)
            break;
        __u64 n = count - done;
        if (n > SS_CHUNK)
            n = SS_CHUNK;
        if (n == 0)
            break;
        if (bpf_probe_read_kernel(&io->swap_map[i * SS_CHUNK], (__u32)n, swap_map + offset + done))
            return 0;
    }
    io->copied = (__u32)count;

    // The zeromap words covering [offset, offset + count), from word offset / 64.
    io->has_zeromap = 0;
    if (!zeromap)
        return 0;
    __u64 first = offset / 64;
    __u64 words = (offset + count + 63) / 64 - first;
    __u64 all = ((__u64)max + 63) / 64;
    if (words > all - first)
        words = all - first;
    for (__u32 i = 0; i < (CPAGESTAT_SS_MAX_SLOTS / 64 + 64) / 64; i++) {
        __u64 done = (__u64)i * 64;
        if (done >= words)
            break;
        __u64 n = words - done;
        if (n > 64)
            n = 64;
        if (n == 0)
            break;
        if (bpf_probe_read_kernel(&io->zeromap[i * 64], (__u32)(n * 8), zeromap + first + done))
            return 0;
    }
    io->has_zeromap = 1;
    return 0;
}

// Reads swap areas' slot states for SwapSlotReader (Sources/PageStat/Kernel/SwapSlotStates.swift).
//
// For a kernel developer: a BPF iterator program (SEC "iter/task_file", run by bpf_iter_create()
// + read(), attached with the link's task filter set to the caller's pid, like xarray.bpf.c). It
// needs no fentry/kprobe (kernels under lockdown may refuse those) and no data symbol in kallsyms
// (swap_info[] and swap_active_head are static). It reaches swap_info_structs from what a task
// can see:
//   - a block device the caller opened (the swap device itself): file->f_mapping->host is the
//     bdev inode, container_of() gives struct bdev_inode, and bdev.bd_holder is the holder the
//     swap device was claimed with. Up to 6.9 swapon claims it with the swap_info_struct as
//     holder; since 6.10 swapon opens the device O_EXCL and the holder is the swap file (a struct
//     file), which the validation below rejects.
//   - the per-cpu `percpu_swap_cluster` (mm/swapfile.c, 6.15+): si[order] is the area each CPU
//     last allocated a cluster from (non-rotational areas only; swapoff clears it). A CPU's
//     per-cpu base is not reachable by symbol, so user space passes the difference between
//     percpu_swap_cluster and runqueues in vmlinux BTF's DATASEC ".data..percpu", and the program
//     adds it to each CPU's runqueue, found through task->se.cfs_rq->tg->cfs_rq[cpu]->rq
//     (CONFIG_FAIR_GROUP_SCHED), checked by rq->cpu.
//   - from any one area, every active one: si->list.node_list is a node of the plist
//     swap_active_head; the walk is bounded, and the list head (not a swap_info_struct) fails the
//     validation and is stepped over.
// A candidate is trusted only if it validates: 0 <= type < 32, max > 0, swap_map set, swap_file's
// mapping host has S_SWAPFILE, and its list node is linked both ways; user space then matches the
// record's (dev, ino, max) against /proc/swaps, read before and after the run.
// For every area reached it records the swap type, the swap file's inode and device, and the
// size; for the area asked for it copies
//   - swap_map[offset ..< offset + count]: per slot the use count, and SWAP_HAS_CACHE (0x40)
//     while a folio for the slot is in the swap cache (being written back, or not yet freed);
//   - the zeromap words covering the range (6.12+: a page that was all zeros when it was swapped
//     out is only a bit here; its slot was never written).
// It takes no lock and reads with bpf_probe_read_kernel() only: nothing is locked, referenced or
// written. A swapoff during the run can make it read freed memory, which costs a wrong record at
// worst: user space discards the run when /proc/swaps changed meanwhile.
//
// Build: Scripts/build-bpf.sh (it builds this object beside xarray.bpf.o and embeds it in the shim
// as Sources/CPagestat/swapslots_bpf_object.h).

#include "bpf_minimal.h"
typedef __u8 uint8_t;   // for CPagestat_swapslots.h (bpf_minimal.h defines the wider ones)
typedef __s64 int64_t;
#include "CPagestat_swapslots.h"

char LICENSE[] SEC("license") = "GPL";

struct list_head {
    struct list_head *next;
    struct list_head *prev;
} __attribute__((preserve_access_index));

struct plist_node {
    struct list_head node_list;
} __attribute__((preserve_access_index));

struct super_block {
    unsigned int s_dev;
} __attribute__((preserve_access_index));

struct inode {
    unsigned short i_mode;
    unsigned int i_flags;
    unsigned long i_ino;
    struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct address_space {
    struct inode *host;
} __attribute__((preserve_access_index));

struct file {
    struct inode *f_inode;
    struct address_space *f_mapping;
} __attribute__((preserve_access_index));

struct block_device {
    void *bd_holder;
} __attribute__((preserve_access_index));

struct bdev_inode {
    struct block_device bdev;
    struct inode vfs_inode;
} __attribute__((preserve_access_index));

struct swap_info_struct {
    struct plist_node list;
    signed char type;
    unsigned int max;
    unsigned char *swap_map;
    unsigned long *zeromap;
    struct block_device *bdev;
    struct file *swap_file;
} __attribute__((preserve_access_index));

struct percpu_swap_cluster {
    struct swap_info_struct *si[1];
} __attribute__((preserve_access_index));

struct rq {
    int cpu;
} __attribute__((preserve_access_index));

struct task_group;
struct cfs_rq {
    struct rq *rq;
    struct task_group *tg;
} __attribute__((preserve_access_index));

struct task_group {
    struct cfs_rq **cfs_rq;
} __attribute__((preserve_access_index));

struct sched_entity {
    struct cfs_rq *cfs_rq;
} __attribute__((preserve_access_index));

struct task_struct {
    int tgid;
    struct sched_entity se;
} __attribute__((preserve_access_index));

struct seq_file;
struct bpf_iter_meta {
    struct seq_file *seq;
    __u64 seq_num;
} __attribute__((preserve_access_index));

// The context of an iter/task_file program (kernel/bpf/task_iter.c): one call per open file.
struct bpf_iter__task_file {
    struct bpf_iter_meta *meta;
    struct task_struct *task;
    __u32 fd;
    struct file *file;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct CPagestat_ss_io);
} ss_io SEC(".maps");

// __builtin_preserve_field_info kinds (libbpf's enum bpf_field_info_kind).
#define FIELD_BYTE_OFFSET 0
#define FIELD_BYTE_SIZE 1
#define FIELD_EXISTS 2

#define S_IFMT 0170000
#define S_IFBLK 0060000
#define S_SWAPFILE 256          // include/linux/fs.h: the inode is an active swap file or device
#define __noinline __attribute__((noinline))
#define SS_CHUNK 512
#define SS_MAX_ORDERS 16        // percpu_swap_cluster.si[SWAP_NR_ORDERS]: 10 on x86_64

// The run's state; reset on the iterator's first call (meta->seq_num == 0).
struct ss_state {
    __u64 anchor;         // a validated swap_info_struct to walk the list from
    __u32 percpu_done;
    __u32 pad;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ss_state);
} ss_state SEC(".maps");

static __always_inline __u64 ss_read_ptr(const void *from) {
    __u64 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), from);
    return value;
}

// Whether `address` looks like an active swap_info_struct (see the validation above). A global
// function: the verifier checks it once, not at every call.
__noinline int ss_valid(__u64 address) {
    struct swap_info_struct *si = (struct swap_info_struct *)address;
    signed char type = -1;
    unsigned int max = 0;
    unsigned int flags = 0;
    if (!si)
        return 0;
    if (bpf_probe_read_kernel(&type, sizeof(type), &si->type) || type < 0 || type >= CPAGESTAT_SS_MAX_AREAS)
        return 0;
    if (bpf_probe_read_kernel(&max, sizeof(max), &si->max) || max == 0)
        return 0;
    if (!ss_read_ptr(&si->swap_map))
        return 0;
    // swapon sets S_SWAPFILE on the mapping's host: the file's inode, or a device's bdev inode.
    struct file *file = (struct file *)ss_read_ptr(&si->swap_file);
    struct address_space *mapping = file ? (struct address_space *)ss_read_ptr(&file->f_mapping) : 0;
    struct inode *host = mapping ? (struct inode *)ss_read_ptr(&mapping->host) : 0;
    if (!host || bpf_probe_read_kernel(&flags, sizeof(flags), &host->i_flags) || !(flags & S_SWAPFILE))
        return 0;
    // Linked both ways: node->next->prev == node.
    struct list_head *node = &si->list.node_list;
    struct list_head *next = (struct list_head *)ss_read_ptr(&node->next);
    return next && ss_read_ptr(&next->prev) == (__u64)node;
}

// bpf_loop()'s context for the copies of one area's slot states: on the stack.
struct ss_copy {
    struct CPagestat_ss_io *io;
    __u64 from;       // the kernel address of the first byte or word to copy
    __u64 count;      // bytes (swap_map) or words (zeromap) to copy
    __u32 failed;
};

// Chunk i of swap_map: SS_CHUNK bytes, the last one shorter.
static long ss_copy_swap_map(__u32 i, struct ss_copy *c) {
    __u64 done = (__u64)i * SS_CHUNK;
    if (done >= c->count || i >= CPAGESTAT_SS_MAX_SLOTS / SS_CHUNK)
        return 1;
    __u64 n = c->count - done;
    if (n > SS_CHUNK)
        n = SS_CHUNK;
    if (n == 0 || bpf_probe_read_kernel(&c->io->swap_map[i * SS_CHUNK], (__u32)n, (void *)(c->from + done))) {
        c->failed = 1;
        return 1;
    }
    return 0;
}

// Chunk i of the zeromap: 64 words, the last one shorter.
static long ss_copy_zeromap(__u32 i, struct ss_copy *c) {
    __u64 done = (__u64)i * 64;
    if (done >= c->count || i >= (CPAGESTAT_SS_MAX_SLOTS / 64 + 64) / 64)
        return 1;
    __u64 n = c->count - done;
    if (n > 64)
        n = 64;
    if (n == 0 || bpf_probe_read_kernel(&c->io->zeromap[i * 64], (__u32)(n * 8), (void *)(c->from + done * 8))) {
        c->failed = 1;
        return 1;
    }
    return 0;
}

// Records a validated area; for the area asked for, copies its slots' swap_map bytes and
// zeromap words. A global function, like ss_valid().
__noinline int ss_record(__u64 address, __u32 how) {
    struct swap_info_struct *si = (struct swap_info_struct *)address;
    __u32 key = 0;
    struct CPagestat_ss_io *io = bpf_map_lookup_elem(&ss_io, &key);
    if (!io || !si)
        return 0;
    signed char type = -1;
    unsigned int max = 0;
    unsigned int dev = 0;
    unsigned long ino = 0;
    unsigned char *swap_map = 0;
    unsigned long *zeromap = 0;
    bpf_probe_read_kernel(&type, sizeof(type), &si->type);
    bpf_probe_read_kernel(&max, sizeof(max), &si->max);
    bpf_probe_read_kernel(&swap_map, sizeof(swap_map), &si->swap_map);
    if (__builtin_preserve_field_info(si->zeromap, FIELD_EXISTS))   // 6.12+
        bpf_probe_read_kernel(&zeromap, sizeof(zeromap), &si->zeromap);
    struct file *file = (struct file *)ss_read_ptr(&si->swap_file);
    struct inode *inode = file ? (struct inode *)ss_read_ptr(&file->f_inode) : 0;
    struct super_block *sb = inode ? (struct super_block *)ss_read_ptr(&inode->i_sb) : 0;
    if (inode)
        bpf_probe_read_kernel(&ino, sizeof(ino), &inode->i_ino);
    if (sb)
        bpf_probe_read_kernel(&dev, sizeof(dev), &sb->s_dev);
    if (type < 0 || type >= CPAGESTAT_SS_MAX_AREAS)
        return 0;

    struct CPagestat_ss_area *area = &io->area[type & (CPAGESTAT_SS_MAX_AREAS - 1)];
    area->reached |= how;
    if (area->seen)
        return 0;
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
    struct ss_copy c = { .io = io, .from = (__u64)(swap_map + offset), .count = count };
    io->result.has_zeromap = 0;
    if (bpf_loop((__u32)((count + SS_CHUNK - 1) / SS_CHUNK), ss_copy_swap_map, &c, 0) < 0 || c.failed)
        return 0;
    io->result.copied = (__u32)count;

    // The zeromap words covering [offset, offset + count), from word offset / 64.
    if (!zeromap)
        return 0;
    __u64 first = offset / 64;
    __u64 words = (offset + count + 63) / 64 - first;
    __u64 all = ((__u64)max + 63) / 64;
    if (words > all - first)
        words = all - first;
    c.from = (__u64)(zeromap + first);
    c.count = words;
    if (bpf_loop((__u32)((words + 63) / 64), ss_copy_zeromap, &c, 0) < 0 || c.failed)
        return 0;
    io->result.has_zeromap = 1;
    return 0;
}

// Every active area, from one: the plist of swap_active_head, through si->list.node_list.
__noinline int ss_walk(__u64 address) {
    struct swap_info_struct *anchor = (struct swap_info_struct *)address;
    __u32 key = 0;
    struct CPagestat_ss_io *io = bpf_map_lookup_elem(&ss_io, &key);
    if (!io || !anchor)
        return 0;
    __u64 offset = __builtin_preserve_field_info(anchor->list.node_list, FIELD_BYTE_OFFSET);
    __u64 start = (__u64)anchor + offset;
    __u64 node = start;
    // Every area and the list head, once.
    for (int i = 0; i < CPAGESTAT_SS_MAX_AREAS + 2; i++) {
        __u64 next = ss_read_ptr(&((struct list_head *)node)->next);
        if (!next)
            return 0;
        if (next == start) {
            io->result.walked = 1;
            return 0;
        }
        struct swap_info_struct *candidate = (struct swap_info_struct *)(next - offset);
        if (ss_valid((__u64)candidate))
            ss_record((__u64)candidate, CPAGESTAT_SS_BY_LIST);
        node = next;
    }
    return 0;
}

// bpf_loop()'s context: on the stack.
struct ss_percpu_ctx {
    __u64 cfs_rqs;    // task_group.cfs_rq: one struct cfs_rq * per possible CPU
    __s64 delta;      // &percpu_swap_cluster - &runqueues
    __u32 orders;     // entries of percpu_swap_cluster.si
};

static long ss_percpu_one(__u32 cpu, struct ss_percpu_ctx *c) {
    __u32 key = 0;
    struct CPagestat_ss_io *io = bpf_map_lookup_elem(&ss_io, &key);
    if (!io)
        return 1;
    struct cfs_rq *cfs_rq = (struct cfs_rq *)ss_read_ptr((void *)(c->cfs_rqs + (__u64)cpu * 8));
    struct rq *rq = cfs_rq ? (struct rq *)ss_read_ptr(&cfs_rq->rq) : 0;
    int rq_cpu = -1;
    if (!rq || bpf_probe_read_kernel(&rq_cpu, sizeof(rq_cpu), &rq->cpu) || rq_cpu != (int)cpu)
        return 0;
    io->result.cpus_read++;
    struct percpu_swap_cluster *cluster = (struct percpu_swap_cluster *)((__u64)rq + c->delta);
    for (__u32 order = 0; order < SS_MAX_ORDERS; order++) {
        if (order >= c->orders)
            break;
        struct swap_info_struct *si = (struct swap_info_struct *)ss_read_ptr(&cluster->si[order]);
        if (!si || !ss_valid((__u64)si))
            continue;
        io->result.percpu_si++;
        ss_record((__u64)si, CPAGESTAT_SS_BY_PERCPU);
        struct ss_state *state = bpf_map_lookup_elem(&ss_state, &key);
        if (state && !state->anchor)
            state->anchor = (__u64)si;
    }
    return 0;
}

// The per-cpu route: each CPU's percpu_swap_cluster, from its runqueue.
static __always_inline void ss_percpu(struct CPagestat_ss_io *io, struct task_struct *task) {
    if (!io->args.cpus || !io->args.percpu_delta)
        return;
    if (!__builtin_preserve_field_info(task->se.cfs_rq, FIELD_EXISTS)
        || !__builtin_preserve_field_info(((struct percpu_swap_cluster *)0)->si, FIELD_EXISTS)) {
        io->result.no_percpu = 1;
        return;
    }
    struct cfs_rq *cfs_rq = (struct cfs_rq *)ss_read_ptr(&task->se.cfs_rq);
    struct task_group *tg = cfs_rq ? (struct task_group *)ss_read_ptr(&cfs_rq->tg) : 0;
    struct ss_percpu_ctx c = {
        .cfs_rqs = tg ? ss_read_ptr(&tg->cfs_rq) : 0,
        .delta = io->args.percpu_delta,
        .orders = __builtin_preserve_field_info(((struct percpu_swap_cluster *)0)->si, FIELD_BYTE_SIZE) / 8,
    };
    if (!c.cfs_rqs)
        return;
    __u32 cpus = io->args.cpus;
    if (cpus > CPAGESTAT_SS_MAX_CPUS)
        cpus = CPAGESTAT_SS_MAX_CPUS;
    bpf_loop(cpus, ss_percpu_one, &c, 0);
}

SEC("iter/task_file")
int ss_task_file(struct bpf_iter__task_file *ctx) {
    __u32 key = 0;
    struct CPagestat_ss_io *io = bpf_map_lookup_elem(&ss_io, &key);
    struct ss_state *state = bpf_map_lookup_elem(&ss_state, &key);
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!io || !state || !task || !file || task->tgid != io->args.tgid)
        return 0;
    if (ctx->meta->seq_num == 0) {
        state->anchor = 0;
        state->percpu_done = 0;
    }

    // A block device of the caller's: its holder, where that is the swap_info_struct.
    struct address_space *mapping = (struct address_space *)ss_read_ptr(&file->f_mapping);
    struct inode *host = mapping ? (struct inode *)ss_read_ptr(&mapping->host) : 0;
    unsigned short mode = 0;
    if (host && !bpf_probe_read_kernel(&mode, sizeof(mode), &host->i_mode) && (mode & S_IFMT) == S_IFBLK) {
        io->result.block_files++;
        __u64 inode_offset = __builtin_preserve_field_info(((struct bdev_inode *)0)->vfs_inode, FIELD_BYTE_OFFSET);
        struct bdev_inode *bdev_inode = (struct bdev_inode *)((__u64)host - inode_offset);
        struct swap_info_struct *si = (struct swap_info_struct *)ss_read_ptr(&bdev_inode->bdev.bd_holder);
        if (si && ss_read_ptr(&si->bdev) == (__u64)&bdev_inode->bdev && ss_valid((__u64)si)) {
            io->result.holder_si++;
            ss_record((__u64)si, CPAGESTAT_SS_BY_HOLDER);
            if (!state->anchor)
                state->anchor = (__u64)si;
        }
    }
    if (!state->percpu_done) {
        state->percpu_done = 1;
        ss_percpu(io, task);
    }
    if (state->anchor && !io->result.walked)
        ss_walk(state->anchor);
    return 0;
}

// Reads the page-cache xarray of one file open in the calling process, for XArrayWalker.swift.
//
// For a kernel developer: this is a BPF iterator program (SEC "iter/task_file", a tracing
// program run by bpf_iter_create() + read()). User space attaches it with the link's task filter
// set to its own pid (union bpf_iter_link_info .task.pid, 6.1+; older kernels iterate every task,
// which is why the program checks the tgid itself too), writes the descriptor and the page-index
// range [first, end) into the shared map `xw_io`, and reads the iterator fd. The program finds
// that descriptor, then walks file->f_mapping->i_pages over the range the way xas_find() would,
// without taking the xa_lock: it runs under the RCU read lock that bpf_iter_run_prog() holds, the
// same protection an RCU page-cache lookup has, and it reads every node and every pointer with
// bpf_probe_read_kernel(), so a node freed under it costs a wrong answer at worst (the XA_RETRY
// entry that a node being freed holds is reported, and user space walks again from there).
// It reads metadata only: no folio is referenced, locked, read or faulted.
//
// Output: runs of page indices of one kind (hole, folio, swap entry, shadow) in index order,
// covering the range exactly, written as fixed-size records into `xw_io`, which user space has
// mmap()ed (BPF_F_MMAPABLE). A pass stops when the record buffer is full or its bpf_loop budget is
// spent, and says where the next pass must start: the walk is resumable at any index.
//
// The xarray, as include/linux/xarray.h encodes its entries (low two bits):
//   00  a pointer: here a folio (the page is in memory; on shmem that includes the swap cache)
//   x1  a value entry, xa_mk_value(v) = v << 1 | 1: on shmem (mm/shmem.c, swp_to_radix_entry())
//       a swp_entry_t, type << SWP_TYPE_SHIFT | offset with SWP_TYPE_SHIFT = BITS_PER_XA_VALUE (63)
//       - MAX_SWAPFILES_SHIFT (5) = 58 (include/linux/swapops.h); on other files a workingset
//       shadow of an evicted page (mm/workingset.c), or a DAX entry on a DAX filesystem
//   10  an internal entry, xa_mk_internal(v) = v << 2 | 2: a node pointer (above 4096; the node is
//       at entry - 2), a sibling (v < 63: the slot v of the same node holds the multi-index entry
//       this slot belongs to), XA_RETRY_ENTRY (v = 256) or XA_ZERO_ENTRY (v = 257, read as none)
// A node has `shift` and 64 slots; slot s of a node covering indices from `base` covers
// [base + (s << shift), base + ((s + 1) << shift)). An entry in a node of shift > 0 that is not a
// node pointer covers that whole span (a multi-index entry). The head xa_head is either a node or
// the single entry for index 0.
//
// A large folio (shmem THP, mTHP) is one multi-index entry: the canonical slot and its siblings.
// shmem swaps a large folio out whole and stores one multi-index swap entry for it, whose swap
// offsets are consecutive: page `index` of the entry is at offset + (index - the entry's first
// index) (see shmem_swapin_folio()'s use of round_down(index, nr_pages)).
//
// Build: Scripts/build-bpf.sh (clang -O2 -g -target bpfel -mcpu=v3); the object is committed
// beside this file and embedded in the shim as Sources/CPagestat/xarray_bpf_object.h.

#include "bpf_minimal.h"
#include "CPagestat_xarray.h"

// The kernel lets only GPL-compatible programs call bpf_probe_read_kernel().
char LICENSE[] SEC("license") = "GPL";

// Kernel types, with only the fields read here. preserve_access_index makes clang emit CO-RE
// relocations: libbpf rewrites each field offset to the running kernel's, from its BTF.
struct super_block {
    unsigned long s_magic;
} __attribute__((preserve_access_index));

struct inode {
    struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct xarray {
    void *xa_head;
} __attribute__((preserve_access_index));

struct address_space {
    struct xarray i_pages;
} __attribute__((preserve_access_index));

struct file {
    struct inode *f_inode;
    struct address_space *f_mapping;
} __attribute__((preserve_access_index));

struct task_struct {
    int tgid;
} __attribute__((preserve_access_index));

struct xa_node {
    unsigned char shift;
    void *slots[64];
} __attribute__((preserve_access_index));

struct seq_file;
struct bpf_iter_meta {
    struct seq_file *seq;
} __attribute__((preserve_access_index));

// The context of an iter/task_file program (kernel/bpf/task_iter.c): one call per open file.
struct bpf_iter__task_file {
    struct bpf_iter_meta *meta;
    struct task_struct *task;
    __u32 fd;
    struct file *file;
} __attribute__((preserve_access_index));

#define TMPFS_MAGIC 0x01021994UL     // include/uapi/linux/magic.h
#define XA_CHUNK_SHIFT 6
#define XA_CHUNK_SIZE 64
#define XA_RETRY_ENTRY 1026UL        // xa_mk_internal(256)
#define XA_ZERO_ENTRY 1030UL         // xa_mk_internal(257)
#define XW_LEVELS 16                 // a 64-bit index needs at most 11 levels of 6 bits
#define XW_SLOTS_PER_STEP 4

// One level of the path from the head to the node being read.
struct xw_level {
    __u64 node;     // the node's address (the entry minus 2)
    __u64 base;     // the first index the node covers
    __u32 shift;    // the node's shift
    __u32 slot;     // the next slot to read
};

// The walk's state: too large for the 512-byte BPF stack, so it lives in a one-element array
// map. User space runs one walk at a time per loaded program (XArrayWalker holds a lock).
struct xw_walk {
    __u64 slots[XW_LEVELS][XA_CHUNK_SIZE];   // each level's node slots, read once per node
    struct xw_level level[XW_LEVELS];
    struct CPagestat_xw_run pending;         // the run being extended, not yet written
    __u64 cur;                               // every index below cur is in pending or written
    __u64 end;
    __s32 depth;                             // the level being read; -1 when the tree is done
    __u32 shmem;                             // value entries are swap entries
    __u32 stop;                              // a CPAGESTAT_XW_* status once the pass must end
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct CPagestat_xw_io);
} xw_io SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct xw_walk);
} xw_walk SEC(".maps");

// bpf_loop()'s context must be on the stack; it carries the two map values.
struct xw_ctx {
    struct xw_walk *w;
    struct CPagestat_xw_io *io;
};

static __always_inline int xw_is_node(__u64 e) { return (e & 3) == 2 && e > 4096; }
static __always_inline int xw_is_sibling(__u64 e) { return (e & 3) == 2 && e < ((XA_CHUNK_SIZE - 1) << 2 | 2); }

// Writes the pending run as a record; -1 when the buffer is full.
static __always_inline int xw_flush(struct xw_walk *w, struct CPagestat_xw_io *io)
{
    __u32 n = io->result.runs;
    if (n >= io->args.max_runs || n >= CPAGESTAT_XW_MAX_RUNS)
        return -1;
    io->run[n & (CPAGESTAT_XW_MAX_RUNS - 1)] = w->pending;
    io->result.runs = n + 1;
    w->pending.pages = 0;
    return 0;
}

// Adds pages [first, first + pages) of `kind` (first == w->cur): extends the pending run when
// it continues it (for swap: with the next swap offsets too), else writes it and starts a new
// one. When the buffer is full the pass stops, and the pending run is where the next one starts.
static __always_inline void xw_emit(struct xw_walk *w, struct CPagestat_xw_io *io, __u64 first, __u64 pages,
                                    __u64 kind, __u64 swap)
{
    struct CPagestat_xw_run *p = &w->pending;
    if (p->pages && p->kind == kind && p->first + p->pages == first &&
        (kind != CPAGESTAT_XW_SWAP || p->swap + p->pages == swap)) {
        p->pages += pages;
    } else {
        if (p->pages && xw_flush(w, io)) {
            w->stop = CPAGESTAT_XW_MORE;
            return;
        }
        p->first = first;
        p->pages = pages;
        p->kind = kind;
        p->swap = kind == CPAGESTAT_XW_SWAP ? swap : 0;
    }
    w->cur = first + pages;
}

// Reports pages [lo, hi) of a non-node entry `e` that starts at index `start` (lo >= start).
// One call of xw_emit, whatever the kind: every inlined copy is a path the verifier walks.
static __always_inline void xw_entry(struct xw_walk *w, struct CPagestat_xw_io *io, __u64 e, __u64 start,
                                     __u64 lo, __u64 hi)
{
    __u64 kind = CPAGESTAT_XW_FOLIO, swap = 0;
    if (e == 0 || e == XA_ZERO_ENTRY) {
        kind = CPAGESTAT_XW_HOLE;
    } else if (e & 1) {
        kind = w->shmem ? CPAGESTAT_XW_SWAP : CPAGESTAT_XW_SHADOW;
        swap = w->shmem ? (e >> 1) + (lo - start) : 0;
    } else if ((e & 3) == 2) {
        w->stop = e == XA_RETRY_ENTRY ? CPAGESTAT_XW_RETRY : CPAGESTAT_XW_BAD_ENTRY;
        io->result.bad_entry = e;
        return;
    }
    xw_emit(w, io, lo, hi - lo, kind, swap);
}

// Makes `node` (covering indices from `base`) the path's level `d`, reading its shift and its
// 64 slots (one 512-byte read), to be read from the slot that holds w->cur.
static __always_inline int xw_push(struct xw_walk *w, struct CPagestat_xw_io *io, __s32 d, __u64 node, __u64 base)
{
    if (d < 0 || d >= XW_LEVELS)
        return -1;
    struct xa_node *n = (struct xa_node *)node;
    unsigned char shift = 0;
    if (bpf_probe_read_kernel(&shift, sizeof(shift), &n->shift))
        return -1;
    if (bpf_probe_read_kernel(w->slots[d & (XW_LEVELS - 1)], sizeof(n->slots), &n->slots))
        return -1;
    io->result.nodes++;
    struct xw_level *l = &w->level[d & (XW_LEVELS - 1)];
    l->node = node;
    l->base = base;
    l->shift = shift;
    l->slot = w->cur > base ? (__u32)((w->cur - base) >> (shift & 63)) : 0;
    w->depth = d;
    return 0;
}

// The tree is done: what is left of the range is beyond its last entry.
static __always_inline void xw_tail(struct xw_walk *w, struct CPagestat_xw_io *io)
{
    if (w->cur < w->end)
        xw_emit(w, io, w->cur, w->end - w->cur, CPAGESTAT_XW_HOLE, 0);
    if (!w->stop)
        w->stop = CPAGESTAT_XW_DONE;
}

// One bpf_loop step: reads up to XW_SLOTS_PER_STEP slots of the deepest node of the path
// (descending into a slot that holds a child node), or, once the node's slots are done, goes back
// up to its parent. The loop inside is short because the verifier walks every iteration on each
// load without a pin: four slots a step cost it about 7 ms more than one (the walk of a 16 GiB
// object about 20% less), eight 44 ms, a whole node of 64 90-135 ms.
static long xw_step(__u64 i, void *ctx)
{
    struct xw_ctx *c = ctx;
    struct xw_walk *w = c->w;
    struct CPagestat_xw_io *io = c->io;
    if (w->stop)
        return 1;
    __s32 d = w->depth;
    if (d < 0 || d >= XW_LEVELS) {
        xw_tail(w, io);
        return 1;
    }
    struct xw_level *l = &w->level[d & (XW_LEVELS - 1)];
    __u64 *slots = w->slots[d & (XW_LEVELS - 1)];
    __u32 shift = l->shift & 63;
    // Up to XW_SLOTS_PER_STEP slots of the same node per step: the step's own cost (the call,
    // the loads of the walk's state) is paid once for them.
    for (int k = 0; k < XW_SLOTS_PER_STEP; k++) {
        __u32 s = l->slot;
        if (s >= XA_CHUNK_SIZE) {
            w->depth = d - 1;
            return 0;
        }
        __u64 start = l->base + ((__u64)s << shift);
        if (start >= w->end) {
            // Every index below end is reported (cur == end).
            w->stop = CPAGESTAT_XW_DONE;
            return 1;
        }
        __u64 hi = start + (1ULL << shift);
        if (hi > w->end)
            hi = w->end;
        __u64 lo = w->cur > start ? w->cur : start;
        l->slot = s + 1;
        if (hi <= lo)
            continue;
        __u64 e = slots[s & (XA_CHUNK_SIZE - 1)];
        if (xw_is_node(e)) {
            // The pass's node budget bounds how long it holds the RCU read lock; once it has
            // reported something, it ends here and the next pass starts at this node.
            if (io->result.nodes >= io->args.max_nodes && w->cur > io->args.first) {
                w->stop = CPAGESTAT_XW_MORE;
                return 1;
            }
            if (shift < XA_CHUNK_SHIFT || xw_push(w, io, d + 1, e - 2, start)) {
                w->stop = CPAGESTAT_XW_BAD_ENTRY;
                io->result.bad_entry = e;
                return 1;
            }
            return 0;
        }
        if (xw_is_sibling(e)) {
            // A sibling slot: the multi-index entry sits in the canonical slot of the same node.
            __u32 canonical = (e >> 2) & (XA_CHUNK_SIZE - 1);
            e = slots[canonical];
            start = l->base + ((__u64)canonical << shift);
        }
        xw_entry(w, io, e, start, lo, hi);
        if (w->stop)
            return 1;
    }
    return 0;
}

SEC("iter/task_file")
int xw_task_file(struct bpf_iter__task_file *ctx)
{
    struct file *file = ctx->file;
    struct task_struct *task = ctx->task;
    if (!file || !task)
        return 0;
    __u32 zero = 0;
    struct CPagestat_xw_io *io = bpf_map_lookup_elem(&xw_io, &zero);
    struct xw_walk *w = bpf_map_lookup_elem(&xw_walk, &zero);
    if (!io || !w)
        return 0;
    if (task->tgid != io->args.tgid || ctx->fd != io->args.fd || io->result.status != CPAGESTAT_XW_NOT_FOUND)
        return 0;

    io->result.s_magic = file->f_inode->i_sb->s_magic;
    w->shmem = io->result.s_magic == TMPFS_MAGIC;
    w->cur = io->args.first;
    w->end = io->args.end;
    w->pending.pages = 0;
    w->stop = 0;
    w->depth = -1;

    __u64 head = 0;
    bpf_probe_read_kernel(&head, sizeof(head), &file->f_mapping->i_pages.xa_head);
    if (xw_is_node(head)) {
        unsigned char shift = 0;
        bpf_probe_read_kernel(&shift, sizeof(shift), &((struct xa_node *)(head - 2))->shift);
        // The root covers [0, 64 << shift); a range starting beyond it is all hole.
        if (w->cur < ((__u64)XA_CHUNK_SIZE << (shift & 63)) && xw_push(w, io, 0, head - 2, 0)) {
            w->stop = CPAGESTAT_XW_BAD_ENTRY;
            io->result.bad_entry = head;
        }
    } else if (head && w->cur == 0 && w->end > 0) {
        // A single entry at the head is index 0's.
        xw_entry(w, io, head, 0, 0, 1);
    }

    if (!w->stop && w->depth >= 0) {
        struct xw_ctx c = { .w = w, .io = io };
        // Each node costs at most 65 steps (its slots, then going back up from it; fewer with
        // several slots a step, and the node budget is also checked at each descent); the extra
        // steps let even a budget of one node descend to a leaf, so every pass makes progress.
        // bpf_loop() refuses more than 1 << 23 steps (BPF_MAX_LOOPS): user space keeps
        // max_nodes at or below 1 << 16.
        bpf_loop(io->args.max_nodes * (XA_CHUNK_SIZE + 1) + 2 * XW_LEVELS, xw_step, &c, 0);
    }
    if (!w->stop) {
        if (w->depth < 0)
            xw_tail(w, io);
        else
            w->stop = CPAGESTAT_XW_MORE;   // the loop budget is spent
    }
    // Write the last run; if it does not fit, the next pass starts at it.
    if (w->pending.pages && xw_flush(w, io)) {
        io->result.next = w->pending.first;
        io->result.status = CPAGESTAT_XW_MORE;
    } else {
        io->result.next = w->cur;
        io->result.status = w->stop;
    }
    return 0;
}

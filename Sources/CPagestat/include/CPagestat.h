// CPagestat: what Swift cannot import from Debian 12's headers.
// Function-like macros become static consts, structs newer than linux-libc-dev 6.1 are declared
// here with their sizes checked, and syscalls without a glibc wrapper get a thin one.
#ifndef CPAGESTAT_H
#define CPAGESTAT_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "CPagestat_bpf.h"
#include "CPagestat_swapread.h"

// lseek(2) whence values for shmem holes; glibc only exports them with _GNU_SOURCE.
static const int CPagestat_SEEK_DATA = 3;
static const int CPagestat_SEEK_HOLE = 4;

// open(2) flags that glibc only exports with _GNU_SOURCE (values checked against fcntl.h in
// shim.c): do not update the file's access time; open a path only (no read, no driver's open).
static const int CPagestat_O_NOATIME = 01000000;
// open(2) flag that glibc only exports with _GNU_SOURCE: a descriptor for the path alone, opening nothing.
static const int CPagestat_O_PATH = 010000000;

// mmap(2) flag (Linux 4.17+) that glibc only exports with _GNU_SOURCE: map at exactly this
// address, or fail with EEXIST rather than replace what is there.
static const int CPagestat_MAP_FIXED_NOREPLACE = 0x100000;
// memfd_create(2) flags for hugetlbfs files: MFD_HUGETLB, and the huge page size as log2 << 26.
static const unsigned int CPagestat_MFD_HUGETLB = 4U;
static const unsigned int CPagestat_MFD_HUGE_SHIFT = 26;

// statfs f_type of hugetlbfs (linux/magic.h).
static const long CPagestat_HUGETLBFS_MAGIC = 0x958458f6;

// madvise(2) advice values that Debian 12's headers may lack.
static const int CPagestat_MADV_COLD = 20;
static const int CPagestat_MADV_PAGEOUT = 21;
static const int CPagestat_MADV_GUARD_INSTALL = 102;
static const int CPagestat_MADV_GUARD_REMOVE = 103;

// PAGEMAP_SCAN (Linux 6.7+): _IOWR('f', 16, struct pm_scan_arg).
struct CPagestat_page_region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

struct CPagestat_pm_scan_arg {
    uint64_t size;
    uint64_t flags;
    uint64_t start;
    uint64_t end;
    uint64_t walk_end;
    uint64_t vec;
    uint64_t vec_len;
    uint64_t max_pages;
    uint64_t category_inverted;
    uint64_t category_mask;
    uint64_t category_anyof_mask;
    uint64_t return_mask;
};

_Static_assert(sizeof(struct CPagestat_page_region) == 24, "page_region is 3 u64");
_Static_assert(sizeof(struct CPagestat_pm_scan_arg) == 96, "pm_scan_arg is 12 u64");

static const unsigned long CPagestat_PAGEMAP_SCAN =
    (3UL << 30) | ((unsigned long)sizeof(struct CPagestat_pm_scan_arg) << 16) | ((unsigned long)'f' << 8) | 16UL;

static const uint64_t CPagestat_PAGE_IS_WPALLOWED = 1ULL << 0;
static const uint64_t CPagestat_PAGE_IS_WRITTEN = 1ULL << 1;
static const uint64_t CPagestat_PAGE_IS_FILE = 1ULL << 2;
static const uint64_t CPagestat_PAGE_IS_PRESENT = 1ULL << 3;
static const uint64_t CPagestat_PAGE_IS_SWAPPED = 1ULL << 4;
static const uint64_t CPagestat_PAGE_IS_PFNZERO = 1ULL << 5;
static const uint64_t CPagestat_PAGE_IS_HUGE = 1ULL << 6;
static const uint64_t CPagestat_PAGE_IS_SOFT_DIRTY = 1ULL << 7;
static const uint64_t CPagestat_PAGE_IS_GUARD = 1ULL << 8;

/// ioctl(fd, PAGEMAP_SCAN, arg); returns the number of regions written, or -1 with errno.
long CPagestat_pagemap_scan(int fd, struct CPagestat_pm_scan_arg *arg);

// cachestat(2) (Linux 6.5+, syscall 451 on every architecture); no glibc wrapper in Debian 12.
struct CPagestat_cachestat_range {
    uint64_t off;
    uint64_t len;
};

struct CPagestat_cachestat {
    uint64_t nr_cache;
    uint64_t nr_dirty;
    uint64_t nr_writeback;
    uint64_t nr_evicted;
    uint64_t nr_recently_evicted;
};

_Static_assert(sizeof(struct CPagestat_cachestat_range) == 16, "cachestat_range is 2 u64");
_Static_assert(sizeof(struct CPagestat_cachestat) == 40, "cachestat is 5 u64");

/// cachestat(fd, range, cstat, 0); 0 or -1 with errno.
int CPagestat_cachestat(int fd, struct CPagestat_cachestat_range *range, struct CPagestat_cachestat *cstat);

/// memfd_create(name, flags) through the raw syscall; fd or -1 with errno.
int CPagestat_memfd_create(const char *name, unsigned int flags);

/// prctl(PR_SET_NAME, name): the calling thread's comm (prctl is variadic: Swift cannot call it).
int CPagestat_set_comm(const char *name);

/// mincore(addr, length, vec) with an unsigned char vector; 0 or -1 with errno.
int CPagestat_mincore(void *addr, size_t length, unsigned char *vec);

/// The f_type of the filesystem under fd (fstatfs), or -1 with errno.
long CPagestat_fstatfs_type(int fd);

/// The f_bsize of the filesystem under fd (fstatfs): the huge page size on hugetlbfs; -1 with errno.
long CPagestat_fstatfs_block_size(int fd);

/// mknod(path, S_IFCHR | mode, makedev(major, minor)), for tests: 0 or -1 with errno.
int CPagestat_mknod_char(const char *path, unsigned int mode, unsigned int major, unsigned int minor);

/// swapon(path, 0) and swapoff(path): 0 or -1 with errno.
int CPagestat_swapon(const char *path);
int CPagestat_swapoff(const char *path);

/// Write-protects [addr, addr + len) with userfaultfd (UFFDIO_REGISTER_MODE_WP, then
/// UFFDIO_WRITEPROTECT; shmem and unpopulated pages included where the kernel has the features),
/// for tests and the lab. Returns the userfaultfd, to keep open while the protection should last,
/// or -1 with errno.
int CPagestat_uffd_writeprotect(void *addr, size_t len);

/// fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length), for tests: frees
/// the pages of [offset, offset + length). 0 or -1 with errno.
int CPagestat_punch_hole(int fd, off_t offset, off_t length);

/// open(2)'s O_DIRECT (its value depends on the architecture; glibc exports it only with
/// _GNU_SOURCE), for tests that read a swap file past the page cache.
extern const int CPagestat_O_DIRECT;

/// pipe2(fds, O_CLOEXEC): 0 or -1 with errno.
int CPagestat_pipe_cloexec(int fds[2]);

/// pidfd_open(pid, 0) through the raw syscall (Linux 5.3+, 434 on every architecture): a
/// descriptor that stays bound to this very process and becomes readable when it exits.
int CPagestat_pidfd_open(int pid);

/// process_vm_readv(pid, &local, 1, &remote, 1, 0): copies `length` bytes at `remote` in process
/// `pid` to `local`. It reads the pages in place (a present page is not faulted; one that is not
/// present would be faulted in: callers read only pages they found present). Returns the bytes
/// copied (fewer at the first page it could not read), or -1 with errno.
long CPagestat_process_vm_readv(int pid, void *local, size_t length, uint64_t remote);

/// For tests: vfork(2) a child that, still sharing this process's address space, writes its pid
/// (a raw pid_t) to `out`, waits for one byte (or EOF) on `in`, then execv(path, argv). Returns in
/// the parent, with the child's pid or -1, once the child has exec'd or exited.
int CPagestat_vfork_exec_after_byte(int in, int out, const char *path, char *const argv[]);

/// struct procmap_query (linux/fs.h, Linux 6.11+), declared here for older headers: one VMA of the
/// address space a /proc/PID/maps descriptor is bound to.
struct CPagestat_procmap_query {
    uint64_t size;
    uint64_t query_flags;
    uint64_t query_addr;
    uint64_t vma_start;
    uint64_t vma_end;
    uint64_t vma_flags;
    uint64_t vma_page_size;
    uint64_t vma_offset;
    uint64_t inode;
    uint32_t dev_major;
    uint32_t dev_minor;
    uint32_t vma_name_size;
    uint32_t build_id_size;
    uint64_t vma_name_addr;
    uint64_t build_id_addr;
};
_Static_assert(sizeof(struct CPagestat_procmap_query) == 104, "procmap_query is 104 bytes");

/// PROCMAP_QUERY query_flags: the VMA covering query_addr, or the next one above it.
static const uint64_t CPagestat_PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10;

/// ioctl(fd, PROCMAP_QUERY, query) on a /proc/PID/maps descriptor (_IOWR('f', 17, ...)):
/// 0, or -1 with errno (ENOENT: no VMA there; ENOTTY or EINVAL: a kernel before 6.11).
int CPagestat_procmap_query(int fd, struct CPagestat_procmap_query *query);

/// kcmp(a, b, KCMP_VM, 0, 0) through the raw syscall (CONFIG_KCMP): 0 when the two processes
/// share one address space (mm), 1, 2 or 3 when not, -1 with errno (ESRCH, EPERM, ENOSYS).
int CPagestat_kcmp_vm(int a, int b);

/// mremap(old, old_size, new_size, MREMAP_MAYMOVE) (variadic in glibc); MAP_FAILED with errno.
void *CPagestat_mremap_maymove(void *old_address, size_t old_size, size_t new_size);

/// glibc's mallopt(M_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD) (<malloc.h>, which Swift's
/// Glibc module leaves out): freed blocks up to these sizes stay in the heap for reuse.
void CPagestat_keep_heap(size_t mmap_threshold, size_t trim_threshold);

/// fflush(stdout), then ferror(stdout): 0, or the errno of stdio's standard output failing (EIO
/// when none is known). stdout is a C global that Swift 6's strict concurrency refuses.
int CPagestat_flush_stdout(void);

/// Undo on exit: actions that put back what a command changed on the host (a temporary swap
/// file, a sysctl), run once by whichever comes first: the command itself (CPagestat_undo_run),
/// exit(3) (atexit), or a signal that ends the process (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE,
/// the other terminating signals and the crash signals; not SIGKILL). The handler only calls
/// async-signal-safe functions on strings copied in at registration, then lets the signal do
/// what it did before (ends the process with the signal's status). Signals already ignored
/// stay ignored.
enum { CPagestat_UNDO_SLOTS = 8 };

/// Installs the signal handlers and the atexit hook (once; later calls do nothing).
void CPagestat_undo_install(void);

/// Registers swapoff(path), then unlink(path) (a missing area or file is no failure). The slot,
/// or -1 with errno (ENAMETOOLONG, ENOSPC when all slots are taken).
int CPagestat_undo_swap_file(const char *path);

/// Registers writing `content` to `path` (open O_WRONLY, one write: a /proc/sys file). The
/// slot, or -1 with errno.
int CPagestat_undo_write_file(const char *path, const char *content);

/// kill(pid, SIGCONT) on exit: resumes a process stopped with SIGSTOP. Returns the slot, or -1.
int CPagestat_undo_continue_process(int pid);

/// unlink(path) on exit: a temporary file that must not outlive the command. Returns the slot, or -1.
int CPagestat_undo_unlink(const char *path);

/// Runs the slot's action now, if it has not run, with the handled signals blocked meanwhile:
/// 0, or the errno of the first step that failed.
int CPagestat_undo_run(int slot);

/// Forgets the slot's action without running it.
void CPagestat_undo_cancel(int slot);

/// Runs every registered action (what an exit path calls before _exit or raise).
void CPagestat_undo_run_all(void);

/// Blocks the handled signals in this thread until CPagestat_undo_release_signals (not nested):
/// a signal that comes meanwhile waits, then runs the actions registered by then.
void CPagestat_undo_hold_signals(void);
void CPagestat_undo_release_signals(void);

#endif

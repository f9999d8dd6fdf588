#define _GNU_SOURCE
#include "CPagestat.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(CPagestat_O_NOATIME == O_NOATIME, "O_NOATIME");
_Static_assert(CPagestat_O_PATH == O_PATH, "O_PATH");

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

long CPagestat_pagemap_scan(int fd, struct CPagestat_pm_scan_arg *arg) {
    return ioctl(fd, CPagestat_PAGEMAP_SCAN, arg);
}

int CPagestat_cachestat(int fd, struct CPagestat_cachestat_range *range, struct CPagestat_cachestat *cstat) {
    return (int)syscall(__NR_cachestat, fd, range, cstat, 0);
}

int CPagestat_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

int CPagestat_set_comm(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

int CPagestat_mincore(void *addr, size_t length, unsigned char *vec) {
    return mincore(addr, length, vec);
}

long CPagestat_fstatfs_type(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return -1;
    return (long)fs.f_type;
}

long CPagestat_fstatfs_block_size(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return -1;
    return (long)fs.f_bsize;
}

int CPagestat_mknod_char(const char *path, unsigned int mode, unsigned int major, unsigned int minor) {
    return mknod(path, S_IFCHR | mode, makedev(major, minor));
}

int CPagestat_swapon(const char *path) { return swapon(path, 0); }

int CPagestat_swapoff(const char *path) { return swapoff(path); }

int CPagestat_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int CPagestat_uffd_writeprotect(void *addr, size_t len) {
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) return -1;
    // UFFD_FEATURE_WP_UNPOPULATED (1 << 14, 6.4+) is missing from Debian 12's headers.
    struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM | (1ULL << 14) };
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        // Before 6.4 the first call fails on the unknown feature, and the kernel zeroes the whole
        // struct it copies back, api included: set it again, or the retry fails too.
        api.api = UFFD_API;
        api.features = 0;
        if (ioctl(uffd, UFFDIO_API, &api) != 0) goto fail;
    }
    struct uffdio_register reg = { .range = { (unsigned long)addr, len }, .mode = UFFDIO_REGISTER_MODE_WP };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) goto fail;
    struct uffdio_writeprotect wp = { .range = { (unsigned long)addr, len }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
    if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) goto fail;
    return uffd;
fail:;
    int saved = errno;
    close(uffd);
    errno = saved;
    return -1;
}

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

int CPagestat_pidfd_open(int pid) {
    return (int)syscall(__NR_pidfd_open, pid, 0);
}

long CPagestat_process_vm_readv(int pid, void *local, size_t length, uint64_t remote) {
    struct iovec here = { local, length };
    struct iovec there = { (void *)(uintptr_t)remote, length };
    return (long)process_vm_readv(pid, &here, 1, &there, 1, 0);
}

int CPagestat_vfork_exec_after_byte(int in, int out, const char *path, char *const argv[]) {
    pid_t child = vfork();
    if (child == 0) {
        // The child shares its parent's address space until execv: only raw system calls here.
        pid_t self = getpid();
        char byte;
        if (write(out, &self, sizeof self) != (ssize_t)sizeof self) _exit(126);
        if (read(in, &byte, 1) < 0) _exit(126);
        execv(path, argv);
        _exit(127);
    }
    return child;
}

int CPagestat_procmap_query(int fd, struct CPagestat_procmap_query *query) {
    unsigned long request = (3UL << 30) | ((unsigned long)sizeof *query << 16) | ((unsigned long)'f' << 8) | 17UL;
    return ioctl(fd, request, query);
}

int CPagestat_kcmp_vm(int a, int b) {
    return (int)syscall(SYS_kcmp, a, b, 1 /* KCMP_VM */, 0, 0);
}

int CPagestat_punch_hole(int fd, off_t offset, off_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
}

const int CPagestat_O_DIRECT = O_DIRECT;

void *CPagestat_mremap_maymove(void *old_address, size_t old_size, size_t new_size) {
    return mremap(old_address, old_size, new_size, MREMAP_MAYMOVE);
}

void CPagestat_keep_heap(size_t mmap_threshold, size_t trim_threshold)
{
    mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, (int)trim_threshold);
}

int CPagestat_flush_stdout(void)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout))
        return errno != 0 ? errno : EIO;
    return 0;
}

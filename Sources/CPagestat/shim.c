#define _GNU_SOURCE
#include "CPagestat.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <unistd.h>

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

int CPagestat_mincore(void *addr, size_t length, unsigned char *vec) {
    return mincore(addr, length, vec);
}

long CPagestat_fstatfs_type(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return -1;
    return (long)fs.f_type;
}

int CPagestat_swapon(const char *path) { return swapon(path, 0); }

int CPagestat_swapoff(const char *path) { return swapoff(path); }

int CPagestat_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

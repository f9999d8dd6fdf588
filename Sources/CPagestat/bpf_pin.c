// The BPF page-cache reader pinned in bpffs, so that later runs skip libbpf and its parse of the
// kernel's BTF: bpf(BPF_OBJ_PIN) once, bpf(BPF_OBJ_GET) after. Layout, under the bpffs mount
// (/sys/fs/bpf; bpffs refuses dots in names, so the release's dots are underscores):
//   pagestat/                                root's, mode 0700
//     xarray-<object hash>-<kernel release>-<kernel build id>/   one per object and kernel
//     new-PID/, discard-PID/                 a run's private directories while it pins or removes
//       prog    the loaded iter/task_file program (its maps stay alive with it)
//       xw_io   its mmap-able map, shared by user space and the program
// A pinned program is one program for every run: each pass takes an flock on its directory.
#define _GNU_SOURCE
#include "CPagestat.h"
#include "bpf_pin.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#define XW_BPF_FS_MAGIC 0xcafe4a11   // include/uapi/linux/magic.h BPF_FS_MAGIC

static long xw_bpf(int cmd, union bpf_attr *attr) {
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int cpagestat_xw_link_iter(int prog_fd, int pid) {
    // uapi union bpf_iter_link_info: task.tid, task.pid, task.pid_fd (6.1+).
    uint32_t info[4] = { 0, (uint32_t)pid, 0, 0 };
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.link_create.prog_fd = (uint32_t)prog_fd;
    attr.link_create.attach_type = BPF_TRACE_ITER;
    if (pid > 0) {
        attr.link_create.iter_info = (uint64_t)(uintptr_t)info;
        attr.link_create.iter_info_len = sizeof(info);
    }
    long fd = xw_bpf(BPF_LINK_CREATE, &attr);
    return fd < 0 ? -errno : (int)fd;
}

int CPagestat_xw_iter_create(int link_fd) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.iter_create.link_fd = (uint32_t)link_fd;
    long fd = xw_bpf(BPF_ITER_CREATE, &attr);
    return fd < 0 ? -errno : (int)fd;
}

// FNV-1a, 64 bits: names the object, it does not protect it (the checks below do).
static uint64_t xw_fnv(const unsigned char *bytes, size_t length) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < length; i++) {
        h ^= bytes[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

// The running kernel's GNU build id (the NT_GNU_BUILD_ID note in /sys/kernel/notes), in hex;
// where there is none, a hash of /proc/version (release, compiler, build date).
static void xw_kernel_id(char *out, size_t size) {
    unsigned char notes[4096];
    ssize_t n = -1;
    int fd = open("/sys/kernel/notes", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, notes, sizeof(notes));
        close(fd);
    }
    for (ssize_t at = 0; n > 0 && at + 12 <= n;) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, notes + at, 4);
        memcpy(&descsz, notes + at + 4, 4);
        memcpy(&type, notes + at + 8, 4);
        ssize_t name = at + 12, desc = name + (ssize_t)((namesz + 3) & ~3u);
        ssize_t next = desc + (ssize_t)((descsz + 3) & ~3u);
        if (next > n || next <= at)
            break;
        if (type == 3 && namesz == 4 && memcmp(notes + name, "GNU", 4) == 0 && descsz > 0 && descsz <= 64) {
            size_t used = 0;
            for (uint32_t i = 0; i < descsz && used + 3 <= size; i++)
                used += (size_t)snprintf(out + used, size - used, "%02x", notes[desc + i]);
            return;
        }
        at = next;
    }
    char version[1024];
    ssize_t v = -1;
    fd = open("/proc/version", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        v = read(fd, version, sizeof(version));
        close(fd);
    }
    snprintf(out, size, "v%016llx", (unsigned long long)xw_fnv((const unsigned char *)version, v > 0 ? (size_t)v : 0));
}

int CPagestat_xw_pin_name(char *name, size_t size) {
    struct utsname u;
    if (uname(&u) != 0)
        return -errno;
    // bpffs refuses names with a dot (reserved, kernel/bpf/inode.c), and a slash is no name.
    for (char *c = u.release; *c; c++)
        if (*c == '/' || *c == '.')
            *c = '_';
    char kernel[160];
    xw_kernel_id(kernel, sizeof(kernel));
    int n = snprintf(name, size, "xarray-%016llx-%s-%s",
                     (unsigned long long)xw_fnv(CPagestat_xarray_bpf_object_bytes(), CPagestat_xarray_bpf_object_length()),
                     u.release, kernel);
    return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

int CPagestat_xw_is_bpffs(const char *path) {
    struct statfs fs;
    return statfs(path, &fs) == 0 && (unsigned long)fs.f_type == XW_BPF_FS_MAGIC;
}

// Root's and closed to everyone else: a directory of mode 0700 or less, or a pin of 0600 or less.
static int xw_root_only(const char *path, int directory) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return -errno;
    if ((directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) || st.st_uid != 0 || (st.st_mode & 077) != 0)
        return -EPERM;
    return 0;
}

int CPagestat_xw_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) == 0 ? 0 : -errno;
    DIR *dir = opendir(path);
    if (!dir)
        return -errno;
    int err = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
            continue;
        char child[4096];
        if (snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) >= (int)sizeof(child)) {
            err = -ENAMETOOLONG;
            continue;
        }
        int e = CPagestat_xw_remove_tree(child);
        if (e && !err)
            err = e;
    }
    closedir(dir);
    if (rmdir(path) != 0 && !err)
        err = -errno;
    return err;
}

// Moves `path` aside (rename is atomic: no other run picks it up meanwhile) and removes it.
static void xw_discard(const char *base, const char *path) {
    char aside[4096];
    snprintf(aside, sizeof(aside), "%s/discard-%d", base, (int)getpid());
    CPagestat_xw_remove_tree(aside);
    if (rename(path, aside) == 0)
        CPagestat_xw_remove_tree(aside);
    else
        CPagestat_xw_remove_tree(path);
}

static int xw_obj_get(const char *path) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.pathname = (uint64_t)(uintptr_t)path;
    long fd = xw_bpf(BPF_OBJ_GET, &attr);
    return fd < 0 ? -errno : (int)fd;
}

static int xw_info(int fd, void *info, uint32_t length) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    memset(info, 0, length);
    attr.info.bpf_fd = (uint32_t)fd;
    attr.info.info_len = length;
    attr.info.info = (uint64_t)(uintptr_t)info;
    return xw_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) == 0 ? 0 : -errno;
}

// Why the program and map at prog_fd and map_fd are not what pagestat pinned; NULL when they are.
static const char *xw_verify(int prog_fd, int map_fd) {
    struct bpf_map_info map;
    if (xw_info(map_fd, &map, sizeof(map)))
        return "its map could not be read";
    if (map.type != BPF_MAP_TYPE_ARRAY || strcmp(map.name, "xw_io") || map.max_entries != 1 ||
        map.key_size != 4 || map.value_size != sizeof(struct CPagestat_xw_io) || !(map.map_flags & BPF_F_MMAPABLE))
        return "its map is not xw_io";
    uint32_t ids[4] = { 0 };
    struct bpf_prog_info prog;
    memset(&prog, 0, sizeof(prog));
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    prog.nr_map_ids = 4;
    prog.map_ids = (uint64_t)(uintptr_t)ids;
    attr.info.bpf_fd = (uint32_t)prog_fd;
    attr.info.info_len = sizeof(prog);
    attr.info.info = (uint64_t)(uintptr_t)&prog;
    if (xw_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) != 0)
        return "its program could not be read";
    if (prog.type != BPF_PROG_TYPE_TRACING || strcmp(prog.name, "xw_task_file"))
        return "it is not the xw_task_file iterator";
    if (prog.created_by_uid != 0)
        return "its program was not loaded by root";
    if (prog.nr_map_ids != 2 || (ids[0] != map.id && ids[1] != map.id))
        return "its program does not use its map";
    return NULL;
}

static void xw_close(int *fd) {
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

int cpagestat_xw_pin_get(const char *root, int *prog_fd, int *map_fd, int *lock_fd, char *note, size_t note_size) {
    char name[256], base[4096], dir[4096], path[4096];
    int err = CPagestat_xw_pin_name(name, sizeof(name));
    if (err)
        return err;
    snprintf(base, sizeof(base), "%s/pagestat", root);
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    struct stat st;
    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    const char *why = NULL;
    *prog_fd = *map_fd = *lock_fd = -1;
    if (xw_root_only(base, 1) || xw_root_only(dir, 1)) {
        why = "its directory is not root's alone";
    } else {
        snprintf(path, sizeof(path), "%s/prog", dir);
        if (xw_root_only(path, 0) || (*prog_fd = xw_obj_get(path)) < 0)
            why = "its program is missing or not root's alone";
        snprintf(path, sizeof(path), "%s/xw_io", dir);
        if (!why && (xw_root_only(path, 0) || (*map_fd = xw_obj_get(path)) < 0))
            why = "its map is missing or not root's alone";
        if (!why)
            why = xw_verify(*prog_fd, *map_fd);
        if (!why && (*lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            why = "its directory could not be opened";
    }
    if (!why)
        return 1;
    xw_close(prog_fd);
    xw_close(map_fd);
    xw_close(lock_fd);
    snprintf(note, note_size, "the program pinned at %s was refused (%s) and removed", dir, why);
    xw_discard(base, dir);
    return 0;
}

// Removes what other objects or kernels pinned, and the private directories of runs that are gone.
static void xw_remove_stale(const char *base, const char *current) {
    DIR *d = opendir(base);
    if (!d)
        return;
    struct dirent *entry;
    while ((entry = readdir(d))) {
        const char *n = entry->d_name;
        int stale = !strncmp(n, "xarray-", 7) && strcmp(n, current);
        int pid = 0;
        if (sscanf(n, "new-%d", &pid) == 1 || sscanf(n, "discard-%d", &pid) == 1)
            stale = pid > 0 && kill(pid, 0) != 0 && errno == ESRCH;
        if (!stale)
            continue;
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", base, n) < (int)sizeof(path))
            CPagestat_xw_remove_tree(path);
    }
    closedir(d);
}

static int xw_obj_pin(int fd, const char *path) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.pathname = (uint64_t)(uintptr_t)path;
    attr.bpf_fd = (uint32_t)fd;
    return xw_bpf(BPF_OBJ_PIN, &attr) == 0 ? 0 : -errno;
}

void cpagestat_xw_pin_put(const char *root, int prog_fd, int map_fd, int *lock_fd, char *note, size_t note_size) {
    char name[256], base[4096], dir[4096], fresh[4096], path[4096];
    if (CPagestat_xw_pin_name(name, sizeof(name)) != 0) {
        snprintf(note, note_size, "not pinned: the kernel release could not be read");
        return;
    }
    snprintf(base, sizeof(base), "%s/pagestat", root);
    snprintf(dir, sizeof(dir), "%s/%s", base, name);
    mode_t mask = umask(077);
    int made = mkdir(base, 0700) == 0 || errno == EEXIST;
    if (made && xw_root_only(base, 1)) {
        // Someone else's, or open to others (bpffs's root is world-writable): replaced.
        xw_discard(root, base);
        made = mkdir(base, 0700) == 0;
    }
    if (!made) {
        umask(mask);
        snprintf(note, note_size, "not pinned: %s could not be made: %s", base, strerror(errno));
        return;
    }
    snprintf(fresh, sizeof(fresh), "%s/new-%d", base, (int)getpid());
    CPagestat_xw_remove_tree(fresh);
    int err = mkdir(fresh, 0700) == 0 ? 0 : -errno;
    if (!err) {
        snprintf(path, sizeof(path), "%s/prog", fresh);
        err = xw_obj_pin(prog_fd, path);
    }
    if (!err) {
        snprintf(path, sizeof(path), "%s/xw_io", fresh);
        err = xw_obj_pin(map_fd, path);
    }
    umask(mask);
    if (!err && rename(fresh, dir) != 0)
        err = -errno;
    if (err) {
        CPagestat_xw_remove_tree(fresh);
        if (err == -EEXIST || err == -ENOTEMPTY)
            snprintf(note, note_size, "loaded here: another run pinned %s meanwhile", dir);
        else
            snprintf(note, note_size, "not pinned at %s: %s", dir, strerror(-err));
        return;
    }
    *lock_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(note, note_size, "loaded with libbpf and pinned at %s for later runs", dir);
    xw_remove_stale(base, name);
}

int CPagestat_xw_begin(const struct CPagestat_xw_loaded *loaded) {
    if (loaded->lock_fd < 0)
        return 0;
    while (flock(loaded->lock_fd, LOCK_EX) != 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

void CPagestat_xw_end(const struct CPagestat_xw_loaded *loaded) {
    if (loaded->lock_fd >= 0)
        flock(loaded->lock_fd, LOCK_UN);
}

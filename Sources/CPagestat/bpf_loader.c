// Loads BPF/xarray.bpf.o with libbpf, opened at run time (dlopen "libbpf.so.1", Debian's libbpf1,
// 1.1.2 or newer): the few functions used here are declared below from libbpf's documented API,
// their types kept opaque, so the build needs neither libbpf nor its headers. Where bpffs is
// mounted, the loaded program is pinned (bpf_pin.c) and later runs take it from there, with
// neither libbpf nor its parse of the kernel's BTF; links and passes use bpf(2) directly.
#define _GNU_SOURCE
#include "CPagestat.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bpf_iter.h"
#include "bpf_pin.h"
#include "xarray_bpf_object.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;

typedef int (*xw_print_fn)(int level, const char *format, va_list args);

static struct {
    xw_print_fn (*set_print)(xw_print_fn);
    struct bpf_object *(*open_mem)(const void *, size_t, const void *opts);
    int (*load)(struct bpf_object *);
    void (*close)(struct bpf_object *);
    struct bpf_program *(*find_program)(const struct bpf_object *, const char *);
    struct bpf_map *(*find_map)(const struct bpf_object *, const char *);
    int (*map_fd)(const struct bpf_map *);
    int (*program_fd)(const struct bpf_program *);
} libbpf;

// libbpf's messages while loading, the verifier's log among them (libbpf prints it on failure).
static char xw_log[1 << 16];
static size_t xw_log_used;

static int xw_capture(int level, const char *format, va_list args) {
    if (level > 1)   // LIBBPF_DEBUG
        return 0;
    if (xw_log_used < sizeof(xw_log) - 1) {
        int n = vsnprintf(xw_log + xw_log_used, sizeof(xw_log) - xw_log_used, format, args);
        if (n > 0)
            xw_log_used += (size_t)n < sizeof(xw_log) - xw_log_used ? (size_t)n : sizeof(xw_log) - 1 - xw_log_used;
    }
    return 0;
}

// Appends the captured log to reason: its first `head` and last `tail` lines, on one line each
// separated by " | ".
static void xw_append_log(char *reason, size_t size, int head, int tail) {
    const char *lines[4096];
    int count = 0;
    char *p = xw_log;
    while (*p && count < 4096) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        if (*p)
            lines[count++] = p;
        if (!nl)
            break;
        p = nl + 1;
    }
    size_t used = strlen(reason);
    for (int i = 0; i < count; i++) {
        if (i == head && count > head + tail) {
            used += (size_t)snprintf(reason + used, size > used ? size - used : 0, " | ...");
            i = count - tail;
        }
        if (used >= size)
            break;
        used += (size_t)snprintf(reason + used, size - used, " | %s", lines[i]);
    }
}

static int xw_fail(int kind, char *reason, size_t size, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(reason, size, format, args);
    va_end(args);
    return kind;
}

static int xw_open_libbpf(char *reason, size_t size) {
    void *lib = dlopen("libbpf.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return xw_fail(CPAGESTAT_XW_LOAD_NO_LIBBPF, reason, size,
                       "libbpf.so.1 could not be opened (install libbpf1, e.g. apt-get install libbpf1): %s", dlerror());
#define XW_SYM(field, name)                                                                                  \
    if (!(*(void **)&libbpf.field = dlsym(lib, name)))                                                     \
        return xw_fail(CPAGESTAT_XW_LOAD_NO_LIBBPF, reason, size, "libbpf.so.1 has no %s (libbpf 1.0 or newer is needed)", name);
    XW_SYM(set_print, "libbpf_set_print")
    XW_SYM(open_mem, "bpf_object__open_mem")
    XW_SYM(load, "bpf_object__load")
    XW_SYM(close, "bpf_object__close")
    XW_SYM(find_program, "bpf_object__find_program_by_name")
    XW_SYM(find_map, "bpf_object__find_map_by_name")
    XW_SYM(map_fd, "bpf_map__fd")
    XW_SYM(program_fd, "bpf_program__fd")
#undef XW_SYM
    return CPAGESTAT_XW_LOAD_OK;
}

// Maps the `xw_io` map at map_fd and attaches an iterator link for `pid` (with the task filter
// where the kernel takes it): the rest of `loaded`.
static int xw_attach(int prog_fd, int map_fd, int pid, struct CPagestat_xw_loaded *loaded, char *reason, size_t size) {
    long page = sysconf(_SC_PAGESIZE);
    size_t length = (sizeof(struct CPagestat_xw_io) + (size_t)page - 1) / (size_t)page * (size_t)page;
    struct CPagestat_xw_io *io = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
    if (io == MAP_FAILED)
        return xw_fail(CPAGESTAT_XW_LOAD_FAILED, reason, size, "mmap of the BPF map xw_io: %s", strerror(errno));
    // Only this process's files: the link's task filter (6.1+); older kernels refuse or ignore
    // it, and the program checks the tgid itself.
    int filtered = 1;
    int link = cpagestat_xw_link_iter(prog_fd, pid);
    if (link < 0) {
        link = cpagestat_xw_link_iter(prog_fd, 0);
        filtered = 0;
    }
    if (link < 0) {
        munmap(io, length);
        return xw_fail(link == -EPERM ? CPAGESTAT_XW_LOAD_NOT_PERMITTED : CPAGESTAT_XW_LOAD_NO_ITERATOR, reason, size,
                       "attaching the BPF task_file iterator failed: %s", strerror(-link));
    }
    // The program, the link and the mapping stay for the life of the process.
    loaded->args = &io->args;
    loaded->result = &io->result;
    loaded->runs = io->run;
    loaded->link_fd = link;
    loaded->pid_filtered = filtered;
    return CPAGESTAT_XW_LOAD_OK;
}

// Loads the embedded object with libbpf: its program's and its map's fds.
static int xw_load_libbpf(int *prog_fd, int *map_fd, char *reason, size_t reason_size) {
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        return xw_fail(CPAGESTAT_XW_LOAD_NO_BTF, reason, reason_size,
                       "no kernel BTF: /sys/kernel/btf/vmlinux: %s (a kernel built with CONFIG_DEBUG_INFO_BTF is needed)",
                       strerror(errno));
    int kind = xw_open_libbpf(reason, reason_size);
    if (kind != CPAGESTAT_XW_LOAD_OK)
        return kind;

    xw_log_used = 0;
    xw_log[0] = 0;
    xw_print_fn previous = libbpf.set_print(xw_capture);
    struct bpf_object *obj = libbpf.open_mem(CPagestat_xarray_bpf_object, sizeof(CPagestat_xarray_bpf_object), NULL);
    int err = obj ? 0 : -errno;
    if (obj)
        err = libbpf.load(obj);
    libbpf.set_print(previous);
    if (err) {
        err = err < 0 ? -err : err;
        if (obj)
            libbpf.close(obj);
        if (!obj)
            kind = xw_fail(CPAGESTAT_XW_LOAD_FAILED, reason, reason_size, "libbpf could not open the BPF object: %s",
                           strerror(err));
        else if (err == EPERM)
            kind = xw_fail(CPAGESTAT_XW_LOAD_NOT_PERMITTED, reason, reason_size,
                           "not permitted to load a BPF iterator (it needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; "
                           "see also kernel.unprivileged_bpf_disabled): %s", strerror(err));
        else if (strstr(xw_log, "failed to find valid kernel BTF") || strstr(xw_log, "Error loading vmlinux BTF"))
            kind = xw_fail(CPAGESTAT_XW_LOAD_NO_BTF, reason, reason_size,
                           "no usable kernel BTF: /sys/kernel/btf/vmlinux could not be parsed (%s)", strerror(err));
        else if (strstr(xw_log, "bpf_iter_task_file") || err == ESRCH)
            kind = xw_fail(CPAGESTAT_XW_LOAD_NO_ITERATOR, reason, reason_size,
                           "this kernel has no BPF task_file iterator (CONFIG_BPF_SYSCALL, 5.8+): %s", strerror(err));
        else if (strstr(xw_log, "PROG LOAD LOG"))
            kind = xw_fail(CPAGESTAT_XW_LOAD_REJECTED, reason, reason_size, "the kernel's verifier rejected the BPF program (%s)",
                           strerror(err));
        else
            kind = xw_fail(CPAGESTAT_XW_LOAD_FAILED, reason, reason_size, "libbpf could not load the BPF program: %s",
                           strerror(err));
        xw_append_log(reason, reason_size, 8, 6);
        return kind;
    }

    struct bpf_program *prog = libbpf.find_program(obj, "xw_task_file");
    struct bpf_map *map = libbpf.find_map(obj, "xw_io");
    *prog_fd = prog ? libbpf.program_fd(prog) : -1;
    *map_fd = map ? libbpf.map_fd(map) : -1;
    if (*prog_fd < 0 || *map_fd < 0) {
        libbpf.close(obj);
        return xw_fail(CPAGESTAT_XW_LOAD_FAILED, reason, reason_size, "the BPF object lacks xw_task_file or xw_io");
    }
    // The object (and with it the fds) stays for the life of the process.
    return CPAGESTAT_XW_LOAD_OK;
}

int CPagestat_xw_load(int pid, const char *pin_root, struct CPagestat_xw_loaded *loaded,
                      char *reason, size_t reason_size, char *note, size_t note_size) {
    reason[0] = 0;
    note[0] = 0;
    loaded->lock_fd = -1;
    loaded->from_pin = 0;
    int prog_fd = -1, map_fd = -1, lock_fd = -1;
    int pinning = pin_root && geteuid() == 0 && CPagestat_xw_is_bpffs(pin_root);
    if (pin_root && !pinning)
        snprintf(note, note_size, geteuid() == 0 ? "not pinned: bpffs is not mounted at %s" : "not pinned: pins are root's (%s)",
                 pin_root);
    char refused[1024] = "";
    if (pinning && cpagestat_xw_pin_get(pin_root, &prog_fd, &map_fd, &lock_fd, refused, sizeof(refused)) == 1) {
        int kind = xw_attach(prog_fd, map_fd, pid, loaded, reason, reason_size);
        if (kind == CPAGESTAT_XW_LOAD_OK) {
            loaded->lock_fd = lock_fd;
            loaded->from_pin = 1;
            char name[256];
            CPagestat_xw_pin_name(name, sizeof(name));
            snprintf(note, note_size, "loaded from pin %s/pagestat/%s", pin_root, name);
            return kind;
        }
        // Not an iterator after all, or no longer attachable: load afresh (the pin stays for
        // whoever made it; this run does not share it).
        close(prog_fd);
        close(map_fd);
        close(lock_fd);
        pinning = 0;
        snprintf(note, note_size, "not pinned: the pinned program could not be attached (%s)", reason);
        reason[0] = 0;
    }
    int kind = xw_load_libbpf(&prog_fd, &map_fd, reason, reason_size);
    if (kind != CPAGESTAT_XW_LOAD_OK)
        return kind;
    kind = xw_attach(prog_fd, map_fd, pid, loaded, reason, reason_size);
    if (kind != CPAGESTAT_XW_LOAD_OK)
        return kind;
    if (pinning) {
        char put[1024] = "";
        cpagestat_xw_pin_put(pin_root, prog_fd, map_fd, &loaded->lock_fd, put, sizeof(put));
        snprintf(note, note_size, "%s%s%s", refused, refused[0] ? "; " : "", put);
    }
    return CPAGESTAT_XW_LOAD_OK;
}

int CPagestat_xw_run(const struct CPagestat_xw_loaded *loaded) {
    int fd = CPagestat_xw_iter_create(loaded->link_fd);
    if (fd < 0)
        return fd;
    return cpagestat_iter_drain(fd);
}

const unsigned char *CPagestat_xarray_bpf_object_bytes(void) {
    return CPagestat_xarray_bpf_object;
}

unsigned long CPagestat_xarray_bpf_object_length(void) {
    return sizeof(CPagestat_xarray_bpf_object);
}

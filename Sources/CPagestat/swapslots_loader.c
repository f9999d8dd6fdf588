// Loads BPF/swapslots.bpf.o with libbpf, opened at run time (dlopen "libbpf.so.1"), like the
// page-cache reader's loader: the few libbpf functions used are declared here, their types opaque.
#define _GNU_SOURCE
#include "CPagestat.h"
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/fiemap.h>

#include "swapslots_bpf_object.h"

_Static_assert(sizeof(struct fiemap) == 32, "struct fiemap header");
_Static_assert(_IOWR('f', 11, struct fiemap) == 0xC020660BUL, "FS_IOC_FIEMAP, as CPagestat_FS_IOC_FIEMAP says");
_Static_assert(sizeof(struct fiemap_extent) == sizeof(struct CPagestat_fiemap_extent), "struct fiemap_extent");

int CPagestat_fiemap(int fd, struct CPagestat_fiemap *map) {
    return ioctl(fd, CPagestat_FS_IOC_FIEMAP, map);
}

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
typedef int (*ss_print_fn)(int level, const char *format, va_list args);

// libbpf's last warning or error while loading, for the reason.
static char ss_log[512];

static int ss_capture(int level, const char *format, va_list args) {
    if (level <= 1)   // LIBBPF_WARN, LIBBPF_INFO is 1, DEBUG 2
        vsnprintf(ss_log, sizeof(ss_log), format, args);
    return 0;
}

int CPagestat_ss_load(struct CPagestat_ss_io **io, char *reason, size_t size) {
    reason[0] = 0;
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
        snprintf(reason, size, "no kernel BTF: /sys/kernel/btf/vmlinux: %s", strerror(errno));
        return -1;
    }
    void *lib = dlopen("libbpf.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(reason, size, "libbpf.so.1 could not be opened (install libbpf1): %s", dlerror());
        return -1;
    }
    ss_print_fn (*set_print)(ss_print_fn) = dlsym(lib, "libbpf_set_print");
    struct bpf_object *(*open_mem)(const void *, size_t, const void *) = dlsym(lib, "bpf_object__open_mem");
    int (*load)(struct bpf_object *) = dlsym(lib, "bpf_object__load");
    void (*close_object)(struct bpf_object *) = dlsym(lib, "bpf_object__close");
    struct bpf_program *(*find_program)(const struct bpf_object *, const char *) = dlsym(lib, "bpf_object__find_program_by_name");
    struct bpf_map *(*find_map)(const struct bpf_object *, const char *) = dlsym(lib, "bpf_object__find_map_by_name");
    int (*map_fd)(const struct bpf_map *) = dlsym(lib, "bpf_map__fd");
    struct bpf_link *(*attach)(const struct bpf_program *) = dlsym(lib, "bpf_program__attach");
    if (!set_print || !open_mem || !load || !close_object || !find_program || !find_map || !map_fd || !attach) {
        snprintf(reason, size, "libbpf.so.1 lacks a function it needs (libbpf 1.0 or newer is needed)");
        return -1;
    }
    ss_log[0] = 0;
    ss_print_fn previous = set_print(ss_capture);
    struct bpf_object *obj = open_mem(CPagestat_swapslots_bpf_object, sizeof(CPagestat_swapslots_bpf_object), NULL);
    int err = obj ? load(obj) : -errno;
    struct bpf_program *prog = obj && !err ? find_program(obj, "ss_swap_show") : NULL;
    struct bpf_map *map = obj && !err ? find_map(obj, "ss_io") : NULL;
    struct bpf_link *link = prog ? attach(prog) : NULL;
    if (prog && !link)
        err = -errno;
    set_print(previous);
    if (err || !prog || !map || !link) {
        err = err < 0 ? -err : err;
        snprintf(reason, size, "the BPF swap slot reader (fentry on swap_show) could not be loaded: %s%s%s",
                 err == EPERM ? "not permitted (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, are needed)" : strerror(err),
                 ss_log[0] ? ": " : "", ss_log);
        size_t n = strlen(reason);
        if (n > 0 && reason[n - 1] == '\n')
            reason[n - 1] = 0;
        if (obj)
            close_object(obj);
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t length = (sizeof(struct CPagestat_ss_io) + (size_t)page - 1) / (size_t)page * (size_t)page;
    void *mapped = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd(map), 0);
    if (mapped == MAP_FAILED) {
        snprintf(reason, size, "mmap of the BPF map ss_io: %s", strerror(errno));
        close_object(obj);
        return -1;
    }
    // The object, the link and the mapping stay for the life of the process.
    *io = mapped;
    return 0;
}

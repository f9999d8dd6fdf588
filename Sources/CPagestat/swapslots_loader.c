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
#include <linux/btf.h>
#include <linux/fiemap.h>

#include "bpf_iter.h"
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
struct btf;
typedef int (*ss_print_fn)(int level, const char *format, va_list args);

// libbpf's `union bpf_iter_link_info` (task filter) and `struct bpf_iter_attach_opts`.
union ss_iter_link_info {
    struct {
        uint32_t tid;
        uint32_t pid;
        uint32_t pid_fd;
    } task;
    uint64_t size[2];
};
struct ss_iter_attach_opts {
    size_t sz;
    union ss_iter_link_info *link_info;
    uint32_t link_info_len;
};

static struct {
    ss_print_fn (*set_print)(ss_print_fn);
    struct bpf_object *(*open_mem)(const void *, size_t, const void *);
    int (*load)(struct bpf_object *);
    void (*close)(struct bpf_object *);
    struct bpf_program *(*find_program)(const struct bpf_object *, const char *);
    struct bpf_map *(*find_map)(const struct bpf_object *, const char *);
    int (*map_fd)(const struct bpf_map *);
    struct bpf_link *(*attach_iter)(const struct bpf_program *, const struct ss_iter_attach_opts *);
    int (*link_fd)(const struct bpf_link *);
    int (*iter_create)(int);
    int (*num_possible_cpus)(void);
    struct btf *(*load_vmlinux_btf)(void);
    void (*btf_free)(struct btf *);
    int (*find_by_name_kind)(const struct btf *, const char *, uint32_t);
    const struct btf_type *(*type_by_id)(const struct btf *, uint32_t);
    const char *(*name_by_offset)(const struct btf *, uint32_t);
} ss_libbpf;

// libbpf's last warning or error while loading, for the reason.
static char ss_log[512];

static int ss_capture(int level, const char *format, va_list args) {
    if (level <= 1)   // LIBBPF_WARN, LIBBPF_INFO is 1, DEBUG 2
        vsnprintf(ss_log, sizeof(ss_log), format, args);
    return 0;
}

static int ss_open_libbpf(char *reason, size_t size) {
    void *lib = dlopen("libbpf.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(reason, size, "libbpf.so.1 could not be opened (install libbpf1): %s", dlerror());
        return -1;
    }
#define SS_SYM(field, name)                                                                          \
    if (!(*(void **)&ss_libbpf.field = dlsym(lib, name))) {                                        \
        snprintf(reason, size, "libbpf.so.1 has no %s (libbpf 1.0 or newer is needed)", name);     \
        return -1;                                                                                 \
    }
    SS_SYM(set_print, "libbpf_set_print")
    SS_SYM(open_mem, "bpf_object__open_mem")
    SS_SYM(load, "bpf_object__load")
    SS_SYM(close, "bpf_object__close")
    SS_SYM(find_program, "bpf_object__find_program_by_name")
    SS_SYM(find_map, "bpf_object__find_map_by_name")
    SS_SYM(map_fd, "bpf_map__fd")
    SS_SYM(attach_iter, "bpf_program__attach_iter")
    SS_SYM(link_fd, "bpf_link__fd")
    SS_SYM(iter_create, "bpf_iter_create")
    SS_SYM(num_possible_cpus, "libbpf_num_possible_cpus")
    SS_SYM(load_vmlinux_btf, "btf__load_vmlinux_btf")
    SS_SYM(btf_free, "btf__free")
    SS_SYM(find_by_name_kind, "btf__find_by_name_kind")
    SS_SYM(type_by_id, "btf__type_by_id")
    SS_SYM(name_by_offset, "btf__name_by_offset")
#undef SS_SYM
    return 0;
}

// &percpu_swap_cluster - &runqueues: their offsets in vmlinux BTF's DATASEC ".data..percpu"
// (per-cpu variables keep their distance on every CPU). 0 with a note when either is missing.
static int64_t ss_percpu_delta(char *note, size_t size) {
    struct btf *btf = ss_libbpf.load_vmlinux_btf();
    if (!btf) {
        snprintf(note, size, "vmlinux BTF could not be read");
        return 0;
    }
    int64_t cluster = -1, runqueues = -1;
    int id = ss_libbpf.find_by_name_kind(btf, ".data..percpu", BTF_KIND_DATASEC);
    const struct btf_type *section = id > 0 ? ss_libbpf.type_by_id(btf, (uint32_t)id) : NULL;
    if (section) {
        const struct btf_var_secinfo *vars = (const struct btf_var_secinfo *)(section + 1);
        for (uint32_t i = 0; i < BTF_INFO_VLEN(section->info); i++) {
            const struct btf_type *var = ss_libbpf.type_by_id(btf, vars[i].type);
            const char *name = var ? ss_libbpf.name_by_offset(btf, var->name_off) : NULL;
            if (name && strcmp(name, "percpu_swap_cluster") == 0)
                cluster = vars[i].offset;
            else if (name && strcmp(name, "runqueues") == 0)
                runqueues = vars[i].offset;
        }
    }
    ss_libbpf.btf_free(btf);
    if (cluster < 0 || runqueues < 0) {
        snprintf(note, size, "this kernel has no %s (per-cpu swap clusters are 6.15+)",
                 cluster < 0 ? "percpu_swap_cluster" : "runqueues in its per-cpu BTF");
        return 0;
    }
    return cluster - runqueues;
}

int CPagestat_ss_load(int pid, struct CPagestat_ss_loaded *loaded, char *reason, size_t size) {
    reason[0] = 0;
    loaded->percpu_note[0] = 0;
    if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
        snprintf(reason, size, "no kernel BTF: /sys/kernel/btf/vmlinux: %s", strerror(errno));
        return -1;
    }
    if (ss_open_libbpf(reason, size) != 0)
        return -1;
    ss_log[0] = 0;
    ss_print_fn previous = ss_libbpf.set_print(ss_capture);
    struct bpf_object *obj = ss_libbpf.open_mem(CPagestat_swapslots_bpf_object, sizeof(CPagestat_swapslots_bpf_object), NULL);
    int err = obj ? ss_libbpf.load(obj) : -errno;
    struct bpf_program *prog = obj && !err ? ss_libbpf.find_program(obj, "ss_task_file") : NULL;
    struct bpf_map *map = obj && !err ? ss_libbpf.find_map(obj, "ss_io") : NULL;
    union ss_iter_link_info info;
    memset(&info, 0, sizeof(info));
    info.task.pid = (uint32_t)pid;
    struct ss_iter_attach_opts opts = { .sz = sizeof(opts), .link_info = &info, .link_info_len = sizeof(info) };
    struct bpf_link *link = prog ? ss_libbpf.attach_iter(prog, &opts) : NULL;
    if (prog && !link)   // pre-6.1 kernels refuse the task filter; the program checks the tgid
        link = ss_libbpf.attach_iter(prog, NULL);
    if (prog && !link)
        err = -errno;
    ss_libbpf.set_print(previous);
    if (err || !prog || !map || !link) {
        err = err < 0 ? -err : err;
        snprintf(reason, size, "the BPF swap slot reader (a task_file iterator) could not be loaded: %s%s%s",
                 err == EPERM ? "not permitted (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, are needed)" : strerror(err),
                 ss_log[0] ? ": " : "", ss_log);
        size_t n = strlen(reason);
        if (n > 0 && reason[n - 1] == '\n')
            reason[n - 1] = 0;
        if (obj)
            ss_libbpf.close(obj);
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    size_t length = (sizeof(struct CPagestat_ss_io) + (size_t)page - 1) / (size_t)page * (size_t)page;
    struct CPagestat_ss_io *io = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, ss_libbpf.map_fd(map), 0);
    if (io == MAP_FAILED) {
        snprintf(reason, size, "mmap of the BPF map ss_io: %s", strerror(errno));
        ss_libbpf.close(obj);
        return -1;
    }
    memset(&io->args, 0, sizeof(io->args));
    io->args.percpu_delta = ss_percpu_delta(loaded->percpu_note, sizeof(loaded->percpu_note));
    int cpus = ss_libbpf.num_possible_cpus();
    io->args.cpus = cpus > 0 ? (uint32_t)cpus : 0;
    // The object, the link and the mapping stay for the life of the process.
    loaded->io = io;
    loaded->link_fd = ss_libbpf.link_fd(link);
    return 0;
}

int CPagestat_ss_run(const struct CPagestat_ss_loaded *loaded) {
    int fd = ss_libbpf.iter_create(loaded->link_fd);
    if (fd < 0)
        return fd < -1 ? fd : -errno;
    return cpagestat_iter_drain(fd);
}

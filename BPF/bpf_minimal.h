// The little of libbpf's bpf_helpers.h and the kernel's uapi/linux/bpf.h that xarray.bpf.c uses,
// written out here so that the program builds with nothing but clang's BPF target: no vmlinux.h,
// no libbpf-dev. Helpers are declared by their number in the kernel's `enum bpf_func_id`
// (include/uapi/linux/bpf.h, the ___BPF_FUNC_MAPPER list); the numbers never change.
#ifndef PAGESTAT_BPF_MINIMAL_H
#define PAGESTAT_BPF_MINIMAL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

// For the interface header shared with user space (Sources/CPagestat/include/CPagestat_xarray.h).
typedef __u32 uint32_t;
typedef __u64 uint64_t;
typedef __s32 int32_t;

// Put a symbol in an ELF section; libbpf reads the program type and attach point from the name.
#define SEC(name) __attribute__((section(name), used))

// BTF-defined maps: each property is encoded in the type of a member, as libbpf expects.
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name

#define __always_inline inline __attribute__((always_inline))

// enum bpf_map_type and map flags.
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_F_MMAPABLE (1U << 10)

// Helpers, by number.
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;

#endif

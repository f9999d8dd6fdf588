// Between bpf_loader.c and bpf_pin.c (not exported to Swift): the BPF program pinned in bpffs,
// and the raw bpf(2) commands used on it.
#ifndef CPAGESTAT_BPF_PIN_H
#define CPAGESTAT_BPF_PIN_H

#include <stddef.h>

/// bpf(BPF_LINK_CREATE) of an iterator link for `prog_fd`, with the task filter set to `pid`
/// when `pid` > 0. The link's fd, or -errno.
int cpagestat_xw_link_iter(int prog_fd, int pid);

/// Opens the program and its `xw_io` map pinned for this object and this kernel under `root`
/// (bpf(BPF_OBJ_GET)), after checking that they are what pagestat pinned: root's, mode 0600 in a
/// root-only directory, a tracing program named xw_task_file using two maps, one of them an
/// mmap-able array named xw_io of the right size. Returns 1 with the fds and a lock fd (the pin's
/// directory) set; 0 when there is no usable pin (a refused one is removed, and `note` says why);
/// -errno when the pins could not be read.
int cpagestat_xw_pin_get(const char *root, int *prog_fd, int *map_fd, int *lock_fd, char *note, size_t note_size);

/// Pins the freshly loaded program and map for the next runs (bpf(BPF_OBJ_PIN) into a private
/// directory, then rename(2) into place, so no run ever sees half a pin), and removes pins of other
/// objects or kernels. Sets `lock_fd` when pinned (a pinned program is shared: passes take the
/// lock). `note` says what happened.
void cpagestat_xw_pin_put(const char *root, int prog_fd, int map_fd, int *lock_fd, char *note, size_t note_size);

#endif

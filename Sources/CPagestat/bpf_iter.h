// Between the two BPF loaders (not exported to Swift): running an iterator link once.
#ifndef CPAGESTAT_BPF_ITER_H
#define CPAGESTAT_BPF_ITER_H

#include <errno.h>
#include <unistd.h>

/// Reads iterator `fd` to its end, which runs the program over every object the link's filter
/// lets through (the programs write nothing to the seq_file: one read runs the whole iteration),
/// then closes it. 0, or -errno of the failed read.
static inline int cpagestat_iter_drain(int fd) {
    char buffer[256];
    ssize_t n;
    int err = 0;
    while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
    }
    close(fd);
    return err;
}

#endif

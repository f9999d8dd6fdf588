#define _GNU_SOURCE
#include "CPagestat.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/swap.h>
#include <time.h>
#include <unistd.h>

// Undo on exit. Each slot holds one action, its strings copied in when it is registered, so that
// the signal handler touches only static memory and calls only async-signal-safe functions
// (swapoff, unlink, open, write, close, kill, sigaction, raise, pthread_sigmask, nanosleep).

enum { SLOT_FREE, SLOT_FILLING, SLOT_ARMED, SLOT_RUNNING };
enum { KIND_SWAP_FILE = 1, KIND_WRITE_FILE = 2, KIND_CONTINUE = 3, KIND_UNLINK = 4 };

struct undo_slot {
    _Atomic int state;
    int kind;
    int pid;
    char path[4096];
    char content[128];
    size_t content_length;
};

static struct undo_slot slots[CPagestat_UNDO_SLOTS];

// The signals that end a process by default (and the crash signals): each runs the undo actions,
// then the action it had before (by default: the end of the process, with the signal's status).
static const int handled[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
                               SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGILL, SIGTRAP, SIGABRT,
                               SIGBUS, SIGFPE, SIGSEGV };
enum { HANDLED_COUNT = sizeof(handled) / sizeof(handled[0]) };
static struct sigaction previous[65];
static _Atomic int installed;

static int run_slot(struct undo_slot *slot) {
    int expected = SLOT_ARMED;
    if (!atomic_compare_exchange_strong(&slot->state, &expected, SLOT_RUNNING)) return 0;
    int failure = 0;
    if (slot->kind == KIND_SWAP_FILE) {
        // Not on (yet): EINVAL. Not created (yet): ENOENT. Either way the path ends up gone.
        if (swapoff(slot->path) != 0 && errno != EINVAL && errno != ENOENT) failure = errno;
        if (unlink(slot->path) != 0 && errno != ENOENT && failure == 0) failure = errno;
    } else if (slot->kind == KIND_WRITE_FILE) {
        int fd = open(slot->path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            failure = errno;
        } else {
            ssize_t written = write(fd, slot->content, slot->content_length);
            if (written != (ssize_t)slot->content_length) failure = written < 0 ? errno : EIO;
            close(fd);
        }
    } else if (slot->kind == KIND_CONTINUE) {
        if (kill(slot->pid, SIGCONT) != 0 && errno != ESRCH) failure = errno;
    } else if (slot->kind == KIND_UNLINK) {
        if (unlink(slot->path) != 0 && errno != ENOENT) failure = errno;
    }
    atomic_store(&slot->state, SLOT_FREE);
    return failure;
}

static void blocked_set(sigset_t *set) {
    sigemptyset(set);
    for (int i = 0; i < HANDLED_COUNT; i++) sigaddset(set, handled[i]);
}

static void run_all_from_handler(void) {
    for (int i = 0; i < CPagestat_UNDO_SLOTS; i++) {
        run_slot(&slots[i]);
        // Another thread is running it (this one cannot be: the command's own path blocks the
        // signals while it runs an action): wait for it to finish before the process ends.
        while (atomic_load(&slots[i].state) == SLOT_RUNNING) {
            struct timespec pause = { 0, 1000000 };
            nanosleep(&pause, NULL);
        }
    }
}

static void handler(int signo, siginfo_t *info, void *context) {
    (void)context;
    int saved = errno;
    run_all_from_handler();
    // Then what the signal would have done without us. A fault (si_code > 0 for SIGSEGV, SIGBUS,
    // SIGILL, SIGFPE, SIGTRAP) happens again when this handler returns, now to the previous
    // action; any other signal is blocked while this handler runs: raise it, then let it through.
    sigaction(signo, &previous[signo], NULL);
    int fault = info && info->si_code > 0 &&
        (signo == SIGSEGV || signo == SIGBUS || signo == SIGILL || signo == SIGFPE || signo == SIGTRAP);
    if (fault) {
        errno = saved;
        return;
    }
    raise(signo);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    errno = saved;
}

static void run_all_at_exit(void) { CPagestat_undo_run_all(); }

void CPagestat_undo_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return;
    atexit(run_all_at_exit);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = handler;
    action.sa_flags = SA_SIGINFO;
    blocked_set(&action.sa_mask);
    for (int i = 0; i < HANDLED_COUNT; i++) {
        int signo = handled[i];
        if (sigaction(signo, NULL, &previous[signo]) != 0) continue;
        // Ignored (nohup, a shell's background job): it ends nothing, so leave it so.
        if (!(previous[signo].sa_flags & SA_SIGINFO) && previous[signo].sa_handler == SIG_IGN) continue;
        sigaction(signo, &action, NULL);
    }
}

static int fill(int kind, const char *path, const char *content, int pid) {
    size_t path_length = strlen(path);
    size_t content_length = content ? strlen(content) : 0;
    if (path_length >= sizeof slots[0].path || content_length >= sizeof slots[0].content) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (int i = 0; i < CPagestat_UNDO_SLOTS; i++) {
        int expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_FILLING)) continue;
        slots[i].kind = kind;
        memcpy(slots[i].path, path, path_length + 1);
        if (content) memcpy(slots[i].content, content, content_length + 1);
        slots[i].content_length = content_length;
        slots[i].pid = pid;
        atomic_store(&slots[i].state, SLOT_ARMED);
        return i;
    }
    errno = ENOSPC;
    return -1;
}

int CPagestat_undo_swap_file(const char *path) { return fill(KIND_SWAP_FILE, path, NULL, 0); }

int CPagestat_undo_write_file(const char *path, const char *content) { return fill(KIND_WRITE_FILE, path, content, 0); }

int CPagestat_undo_unlink(const char *path) { return fill(KIND_UNLINK, path, NULL, 0); }

int CPagestat_undo_continue_process(int pid) {
    if (pid <= 0) {
        errno = EINVAL;
        return -1;
    }
    return fill(KIND_CONTINUE, "", NULL, pid);
}

int CPagestat_undo_run(int slot) {
    if (slot < 0 || slot >= CPagestat_UNDO_SLOTS) return 0;
    sigset_t set, old;
    blocked_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int failure = run_slot(&slots[slot]);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return failure;
}

void CPagestat_undo_cancel(int slot) {
    if (slot < 0 || slot >= CPagestat_UNDO_SLOTS) return;
    int expected = SLOT_ARMED;
    atomic_compare_exchange_strong(&slots[slot].state, &expected, SLOT_FREE);
}

void CPagestat_undo_run_all(void) {
    for (int i = 0; i < CPagestat_UNDO_SLOTS; i++) CPagestat_undo_run(i);
}

static sigset_t held_mask;

void CPagestat_undo_hold_signals(void) {
    sigset_t set;
    blocked_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, &held_mask);
}

void CPagestat_undo_release_signals(void) {
    pthread_sigmask(SIG_SETMASK, &held_mask, NULL);
}

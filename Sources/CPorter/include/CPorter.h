/* CPorter: what Swift cannot call on its own.
 *
 * - porter_spawn(): the child side of spawning. Between clone and execve no
 *   Swift runs and nothing allocates; see spawn.c for the order of operations.
 * - Small shims for variadic or macro-only C interfaces (fcntl, ioctl, open,
 *   errno, WIFEXITED & co.), so the Swift side never guesses at ABI details.
 */
#ifndef CPORTER_H
#define CPORTER_H

#include <stdint.h>
#include <sys/types.h>

/* Re-exported so the Swift wrappers see every kernel interface they wrap. */
#include <arpa/inet.h>
#include <grp.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>

/* Where a failed child stopped; sent back with errno over the error pipe. */
enum porter_spawn_stage {
    PORTER_STAGE_NONE = 0,
    PORTER_STAGE_SIGNALS = 1,
    PORTER_STAGE_SETSID = 2,
    PORTER_STAGE_SETGROUPS = 3,
    PORTER_STAGE_SETGID = 4,
    PORTER_STAGE_SETUID = 5,
    PORTER_STAGE_FDS = 6,
    PORTER_STAGE_CHDIR = 7,
    PORTER_STAGE_NO_NEW_PRIVS = 8,
    PORTER_STAGE_EXEC = 9,
    PORTER_STAGE_CLONE = 10,
    PORTER_STAGE_RLIMIT = 11,
    PORTER_STAGE_NICE = 12,
    PORTER_STAGE_OOM_SCORE = 13,
    PORTER_STAGE_IOPRIO = 14,
    PORTER_STAGE_SCHEDULER = 15,
    PORTER_STAGE_AFFINITY = 16,
    PORTER_STAGE_TIMER_SLACK = 17,
    PORTER_STAGE_PERSONALITY = 18,
    /* setrlimit of Limit*=: this plus the resource number */
    PORTER_STAGE_LIMIT_BASE = 100,
};

/* One Limit*= of systemd.exec(5). */
struct porter_rlimit {
    int32_t resource;
    uint64_t cur;
    uint64_t max;
};

/* What systemd.exec(5) sets on the process that needs no sandbox; applied
 * before the ids change (raising a hard limit, lowering the nice value or a
 * realtime policy need the privileges porter may be about to drop). */
struct porter_process_settings {
    const struct porter_rlimit *limits;
    int nlimits;
    int set_nice;
    int nice;
    int set_oom_score;
    int oom_score_adj;
    int set_ioprio;
    int ioprio;
    int set_scheduler;
    int sched_policy;            /* SCHED_RESET_ON_FORK or'ed in */
    int sched_priority;
    const uint8_t *affinity;     /* NULL: leave it */
    int affinity_size;
    int set_timer_slack;
    uint64_t timer_slack;
    int set_personality;
    unsigned long personality;
    int ignore_sigpipe;          /* SIGPIPE ignored across exec */
};

/* The message a failed child writes to the error pipe: one write, atomic. */
struct porter_spawn_failure {
    int32_t pid;
    int32_t stage;
    int32_t error;
};

/* Everything the child needs, prepared by the parent. The child only reads
 * it, except for the two digit slots below, which live in the parent's
 * per-spawn buffers. */
struct porter_spawn_request {
    const char *path;            /* absolute path of the program */
    char *const *argv;
    char *const *envp;
    /* Slots inside envp strings ("LISTEN_PID=" followed by room for digits):
     * the child writes its own pid / pidfd inode id there before execve.
     * NULL when unused. Each has room for 20 digits and a NUL. */
    char *listen_pid_digits;
    char *listen_pidfdid_digits;
    const int *fds;              /* fds[i] is the source for fd i; -1 = leave i closed */
    int nfds;                    /* at least 3: stdin, stdout, stderr, then 3... */
    int error_fd;                /* write end of the CLOEXEC, O_NONBLOCK error pipe */
    int new_session;             /* setsid() */
    int change_ids;              /* setgroups + setresgid + setresuid */
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    const char *cwd;             /* NULL: no chdir (porter always gives one: WorkingDirectory= or / or ~) */
    int cwd_optional;            /* WorkingDirectory=-PATH: ignore a failing chdir */
    int umask;                   /* -1: inherit */
    int no_new_privs;
    const int *reset_signals;    /* signals porter ignores that the child must not */
    int nreset_signals;
    /* Slot for WATCHDOG_PID (sd_watchdog_enabled(3)), like LISTEN_PID. */
    char *watchdog_pid_digits;
    /* RLIMIT_NOFILE for the child when porter raised its own (0/0: leave). */
    uint64_t nofile_soft;
    uint64_t nofile_hard;
    const struct porter_process_settings *settings; /* NULL: none */
};

/* Starts the child and returns its pid, or -errno when clone itself failed.
 * Returns only after the child has called execve or exited (vfork
 * semantics), so a failure message, if any, is already in the error pipe. */
pid_t porter_spawn(const struct porter_spawn_request *request);

/* Linux open(2) flags and *at(2) flags that glibc exposes only under _GNU_SOURCE. */
#define PORTER_O_NOATIME 01000000
#define PORTER_O_PATH 010000000
#define PORTER_AT_EMPTY_PATH 0x1000

/* Starts the child without waiting for its exec (CLONE_VM without
 * CLONE_VFORK), so porter can accept the next connection while the child
 * execs on the other core. The child runs on `stack_top` and reads
 * `request` until it has exec'd or exited; the caller keeps both alive until
 * then, which it learns from `*done_word`: porter sets it non-zero, the
 * kernel clears it when the child's memory is released (at execve or exit,
 * CLONE_CHILD_CLEARTID). A failure before exec arrives on the error pipe
 * later. Returns the pid or -errno. */
pid_t porter_spawn_detached(const struct porter_spawn_request *request, void *stack_top, int *done_word);
/* Whether a detached child has let go of its stack and request. */
int porter_spawn_released(const int *done_word);
/* A child stack with a guard page below it; NULL on failure. */
void *porter_stack_create(size_t size);
void porter_stack_destroy(void *stack, size_t size);

/* Shims for variadic or macro interfaces. */
int porter_errno(void);
void porter_set_errno(int value);
int porter_fcntl_int(int fd, int cmd, int arg);
int porter_open(const char *path, int flags, unsigned mode);
int porter_openat(int dirfd, const char *path, int flags, unsigned mode);
int porter_pipe2(int fds[2], int flags);
int porter_accept4(int fd, void *addr, unsigned *addrlen, int flags);
struct porter_peer_credentials {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
};
int porter_peer_credentials(int fd, struct porter_peer_credentials *out);
int porter_ioctl_int(int fd, unsigned long request, int *value);

int porter_wifexited(int status);
int porter_wexitstatus(int status);
int porter_wifsignaled(int status);
int porter_wtermsig(int status);
int porter_wcoredump(int status);

/* pidfd_open(2), where the kernel has it; -errno otherwise. */
int porter_pidfd_open(pid_t pid);
/* pidfd_send_signal(2): 0, or -errno (ESRCH once the process has exited). */
int porter_pidfd_send_signal(int pidfd, int sig);
/* Whether pidfds live on pidfs (Linux 6.9+), where a pidfd's inode number is
 * a unique 64-bit process id: what LISTEN_PIDFDID carries. */
int porter_pidfs_supported(void);
/* Receives one sd_notify datagram: the text (not NUL-terminated), the
 * sender's pid and uid from SCM_CREDENTIALS (the socket has SO_PASSCRED), and
 * up to `max_fds` fds passed with SCM_RIGHTS (received close-on-exec; any
 * beyond `max_fds` are closed). `*truncated` is 1 when fds were lost
 * (MSG_CTRUNC, or more than `max_fds`), 2 when the text was longer than
 * `size`, 0 otherwise. Returns the text length, -EAGAIN when nothing waits,
 * or -errno. */
long porter_notify_receive(int fd, char *text, size_t size, int32_t *pid, uint32_t *uid,
                           int *fds, int max_fds, int *nfds, int *truncated);

/* One classic BPF instruction, laid out as struct sock_filter. */
struct porter_bpf_insn {
    uint16_t code;
    uint8_t jt;
    uint8_t jf;
    uint32_t k;
};
/* SO_ATTACH_FILTER with `count` instructions (replacing any filter the
 * socket has); count 0 detaches it (SO_DETACH_FILTER; no filter is not an
 * error). Returns 0 or -errno. */
int porter_socket_filter(int fd, const struct porter_bpf_insn *insns, unsigned short count);

/* Raises the soft RLIMIT_NOFILE to the hard limit; stores the old soft and
 * hard limits. Returns 0 or -errno. */
int porter_raise_nofile(uint64_t *old_soft, uint64_t *hard);
/* Gives free heap memory back to the kernel (malloc_trim). */
void porter_trim_heap(void);
/* Drops the page mappings of porter's own read-only, executable segment:
 * after start-up most of it is cold, and file-backed pages the kernel maps
 * ahead of each fault ("fault-around", 16 pages) would otherwise stay
 * counted. The pages stay in the page cache and come back on use.
 * Returns the bytes advised. */
long porter_release_text(void);
/* close_range(2); -errno on failure. */
int porter_close_range(unsigned first, unsigned last, unsigned flags);
/* splice(2) between two fds (one a pipe), without offsets; -errno on failure. */
ssize_t porter_splice(int from, int to, size_t len, unsigned int flags);
/* fcntl(F_SETPIPE_SZ): the new capacity, or -errno. */
int porter_set_pipe_size(int fd, int size);
/* SO_ERROR: the pending error of a socket (a non-blocking connect's outcome). */
int porter_socket_error(int fd);
/* SO_LINGER {1, 0}: closing the socket sends a reset. */
int porter_reset_on_close(int fd);
/* A close-on-exec memfd (an upgrade's state); -errno on failure. */
int porter_memfd_create(const char *name);
/* execve(2); returns -errno when it fails (it does not return otherwise). */
int porter_execve(const char *path, char *const argv[], char *const envp[]);
/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphans of porter's children become
 * porter's children. 0 or -errno. */
int porter_set_child_subreaper(void);

#endif

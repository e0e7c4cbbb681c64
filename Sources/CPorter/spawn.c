/* spawn.c - the child side of spawning a service.
 *
 * The child is created with clone(CLONE_VM | CLONE_VFORK), as glibc's
 * posix_spawn does: it borrows porter's address space instead of copying it,
 * so the cost does not grow with porter's size (fork() copies the page tables:
 * 4x slower here for a 64 MiB parent), and porter is suspended until the child
 * has called execve or exited.
 *
 * Because the child shares porter's memory and thread pointer, it must not
 * touch anything glibc keeps per thread (errno, locks, the setxid broadcast
 * that glibc's setuid() does to "all threads"). So the child makes raw system
 * calls only, allocates nothing and writes only to its own stack and to the
 * digit slots the parent reserved for it.
 *
 * Order, after OpenBSD inetd and swift-subprocess:
 *   1. default dispositions for the signals porter ignores, then an empty mask
 *      (porter blocks the signals it reads through signalfd; a child must not
 *      inherit that mask, and ignored dispositions survive execve)
 *   2. setsid, so the service gets its own process group porter can signal
 *   2b. the process settings (Limit*=, Nice=, OOMScoreAdjust=, scheduling,
 *      affinity, timer slack, personality), still privileged
 *   3. setgroups, setresgid, setresuid: groups first, because once the uid is
 *      dropped the process may no longer change its groups
 *   4. move fds into place 0..n-1, lifting sources out of the target range
 *      first so overlapping moves cannot clobber each other (skalibs fd_move)
 *   5. LISTEN_PID / LISTEN_PIDFDID / WATCHDOG_PID digits into their
 *      reserved env slots
 *   6. the fd limit porter found at start (it raises its own), chdir,
 *      umask, no_new_privs
 *   7. close everything above the targets except the error pipe
 *   8. execve; on any failure, write {pid, stage, errno} to the error pipe
 *      and _exit(127).
 */
#define _GNU_SOURCE
#include "CPorter.h"
#include "syscall_numbers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>


/* Raw system calls that return -errno and never touch the errno TLS slot. */
#if defined(__x86_64__)
static inline long raw6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long ret;
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
static inline long raw6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a1;
    register long x1 __asm__("x1") = a2;
    register long x2 __asm__("x2") = a3;
    register long x3 __asm__("x3") = a4;
    register long x4 __asm__("x4") = a5;
    register long x5 __asm__("x5") = a6;
    __asm__ volatile("svc 0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory", "cc");
    return x0;
}
#else
/* Elsewhere syscall(2) writes errno; harmless under CLONE_VFORK because
 * porter is suspended until the child execs or exits. */
static inline long raw6(long n, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long r = syscall(n, a1, a2, a3, a4, a5, a6);
    return r == -1 ? -errno : r;
}
#endif

#define RAW0(n) raw6((n), 0, 0, 0, 0, 0, 0)
#define RAW1(n, a) raw6((n), (long)(a), 0, 0, 0, 0, 0)
#define RAW2(n, a, b) raw6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define RAW3(n, a, b, c) raw6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define RAW4(n, a, b, c, d) raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

#define MAX_SPAWN_FDS 1024

/* The kernel's struct sigaction; all zero means SIG_DFL, no flags, no mask. */
struct kernel_sigaction {
    unsigned long handler, flags, restorer, mask;
};

static void write_digits(char *slot, unsigned long long value)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    for (int i = 0; i < n; i++)
        slot[i] = tmp[n - 1 - i];
    slot[n] = '\0';
}

static __attribute__((noreturn)) void fail(const struct porter_spawn_request *rq, int stage, long err)
{
    struct porter_spawn_failure f = {
        .pid = (int32_t)RAW0(SYS_getpid),
        .stage = stage,
        .error = (int32_t)-err,
    };
    (void)RAW3(SYS_write, rq->error_fd, &f, sizeof f);
    for (;;)
        (void)RAW1(SYS_exit_group, 127);
}

/* Puts src[i] at fd i for every i, clearing FD_CLOEXEC on the targets.
 * *errfd follows the error pipe if it has to be lifted, also on failure, so
 * the caller can still report. Returns 0 or -errno. */
static long place_fds(int *src, int n, int *errfd)
{
    /* 1. Lift the error pipe, and every source that sits inside the target
     *    range but not at its own target, to >= n. All uses of a lifted fd
     *    are redirected, so a later dup3 into a target never destroys a
     *    source. */
    if (*errfd < n) {
        long lifted = RAW3(SYS_fcntl, *errfd, F_DUPFD_CLOEXEC, n);
        if (lifted < 0)
            return lifted;
        *errfd = (int)lifted;
    }
    for (int t = 0; t < n; t++) {
        int s = src[t];
        if (s < 0 || s >= n || s == t)
            continue;
        long lifted = RAW3(SYS_fcntl, s, F_DUPFD_CLOEXEC, n);
        if (lifted < 0)
            return lifted;
        for (int k = 0; k < n; k++)
            if (src[k] == s)
                src[k] = (int)lifted;
    }
    /* 2. Place. dup3 without O_CLOEXEC leaves the target inheritable; a
     *    source already in place only needs its FD_CLOEXEC cleared. */
    for (int t = 0; t < n; t++) {
        long r = 0;
        if (src[t] < 0)
            (void)RAW1(SYS_close, t);
        else if (src[t] == t)
            r = RAW3(SYS_fcntl, t, F_SETFD, 0);
        else
            r = RAW3(SYS_dup3, src[t], t, 0);
        if (r < 0)
            return r;
    }
    return 0;
}

/* "-1000".."1000" and a newline into buf; returns the length. */
static int format_int(char *buf, int value)
{
    char tmp[12];
    int n = 0, len = 0;
    unsigned v = value < 0 ? (unsigned)(-(long)value) : (unsigned)value;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    if (value < 0) buf[len++] = '-';
    while (n) buf[len++] = tmp[--n];
    buf[len++] = '\n';
    return len;
}

static void apply_settings(const struct porter_spawn_request *rq)
{
    const struct porter_process_settings *ps = rq->settings;
    long r;
    for (int i = 0; i < ps->nlimits; i++) {
        struct { uint64_t cur, max; } lim = { ps->limits[i].cur, ps->limits[i].max };
        r = RAW4(SYS_prlimit64, 0, ps->limits[i].resource, &lim, NULL);
        if (r < 0)
            fail(rq, PORTER_STAGE_LIMIT_BASE + ps->limits[i].resource, r);
    }
    if (ps->set_nice) {
        r = RAW3(SYS_setpriority, PRIO_PROCESS, 0, ps->nice);
        if (r < 0)
            fail(rq, PORTER_STAGE_NICE, r);
    }
    if (ps->set_oom_score) {
        char buf[16];
        int len = format_int(buf, ps->oom_score_adj);
        long fd = RAW4(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC, 0);
        if (fd < 0)
            fail(rq, PORTER_STAGE_OOM_SCORE, fd);
        r = RAW3(SYS_write, fd, buf, len);
        (void)RAW1(SYS_close, fd);
        if (r < 0)
            fail(rq, PORTER_STAGE_OOM_SCORE, r);
    }
    if (ps->set_ioprio) {
        r = RAW3(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, ps->ioprio);
        if (r < 0)
            fail(rq, PORTER_STAGE_IOPRIO, r);
    }
    if (ps->set_scheduler) {
        struct { int priority; } param = { ps->sched_priority };
        r = RAW3(SYS_sched_setscheduler, 0, ps->sched_policy, &param);
        if (r < 0)
            fail(rq, PORTER_STAGE_SCHEDULER, r);
    }
    if (ps->affinity) {
        r = RAW3(SYS_sched_setaffinity, 0, ps->affinity_size, ps->affinity);
        if (r < 0)
            fail(rq, PORTER_STAGE_AFFINITY, r);
    }
    if (ps->set_timer_slack) {
        r = raw6(SYS_prctl, PR_SET_TIMERSLACK, (long)ps->timer_slack, 0, 0, 0, 0);
        if (r < 0)
            fail(rq, PORTER_STAGE_TIMER_SLACK, r);
    }
    if (ps->set_personality) {
        r = RAW1(SYS_personality, ps->personality);
        if (r < 0)
            fail(rq, PORTER_STAGE_PERSONALITY, r);
    }
    if (ps->ignore_sigpipe) {
        static const struct kernel_sigaction ign = { .handler = 1 /* SIG_IGN */ };
        r = RAW4(SYS_rt_sigaction, SIGPIPE, &ign, NULL, 8);
        if (r < 0)
            fail(rq, PORTER_STAGE_SIGNALS, r);
    }
}

static int child_main(void *arg)
{
    const struct porter_spawn_request *rq = arg;
    long r;

    static const struct kernel_sigaction dfl; /* zero: SIG_DFL */
    for (int i = 0; i < rq->nreset_signals; i++) {
        r = RAW4(SYS_rt_sigaction, rq->reset_signals[i], &dfl, NULL, 8);
        if (r < 0)
            fail(rq, PORTER_STAGE_SIGNALS, r);
    }
    unsigned long empty = 0;
    r = RAW4(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, 8);
    if (r < 0)
        fail(rq, PORTER_STAGE_SIGNALS, r);

    if (rq->new_session) {
        r = RAW0(SYS_setsid);
        if (r < 0)
            fail(rq, PORTER_STAGE_SETSID, r);
    }

    if (rq->settings)
        apply_settings(rq);

    if (rq->change_ids) {
        r = RAW2(SYS_setgroups, rq->ngroups, rq->groups);
        if (r < 0)
            fail(rq, PORTER_STAGE_SETGROUPS, r);
        r = RAW3(SYS_setresgid, rq->gid, rq->gid, rq->gid);
        if (r < 0)
            fail(rq, PORTER_STAGE_SETGID, r);
        r = RAW3(SYS_setresuid, rq->uid, rq->uid, rq->uid);
        if (r < 0)
            fail(rq, PORTER_STAGE_SETUID, r);
    }

    int n = rq->nfds;
    if (n > MAX_SPAWN_FDS)
        fail(rq, PORTER_STAGE_FDS, -EMFILE);
    int src[MAX_SPAWN_FDS];
    for (int i = 0; i < n; i++)
        src[i] = rq->fds[i];
    int errfd = rq->error_fd;
    r = place_fds(src, n, &errfd);
    /* From here on, report through the (possibly lifted) error pipe. */
    struct porter_spawn_request lifted = *rq;
    lifted.error_fd = errfd;
    rq = &lifted;
    if (r < 0)
        fail(rq, PORTER_STAGE_FDS, r);

    if (rq->listen_pid_digits || rq->listen_pidfdid_digits || rq->watchdog_pid_digits) {
        long pid = RAW0(SYS_getpid);
        if (rq->listen_pid_digits)
            write_digits(rq->listen_pid_digits, (unsigned long long)pid);
        if (rq->watchdog_pid_digits)
            write_digits(rq->watchdog_pid_digits, (unsigned long long)pid);
        if (rq->listen_pidfdid_digits) {
            unsigned long long id = 0;
            long pfd = RAW2(SYS_pidfd_open, pid, 0);
            if (pfd >= 0) {
                struct stat st;
                if (RAW2(SYS_fstat, pfd, &st) == 0)
                    id = (unsigned long long)st.st_ino;
                (void)RAW1(SYS_close, pfd);
            }
            write_digits(rq->listen_pidfdid_digits, id);
        }
    }

    if (rq->nofile_soft || rq->nofile_hard) {
        struct { uint64_t cur, max; } lim = { rq->nofile_soft, rq->nofile_hard };
        r = RAW4(SYS_prlimit64, 0, RLIMIT_NOFILE, &lim, NULL);
        if (r < 0)
            fail(rq, PORTER_STAGE_RLIMIT, r);
    }

    if (rq->cwd) {
        r = RAW1(SYS_chdir, rq->cwd);
        if (r < 0 && !rq->cwd_optional)
            fail(rq, PORTER_STAGE_CHDIR, r);
    }
    if (rq->umask >= 0)
        (void)RAW1(SYS_umask, rq->umask);
    if (rq->no_new_privs) {
        r = raw6(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0);
        if (r < 0)
            fail(rq, PORTER_STAGE_NO_NEW_PRIVS, r);
    }

    /* Everything porter opens is close-on-exec already; this also closes
     * whatever porter itself inherited without the flag. */
    if (errfd > n)
        (void)RAW3(SYS_close_range, n, errfd - 1, 0);
    (void)RAW3(SYS_close_range, errfd + 1, ~0U, 0);

    r = RAW3(SYS_execve, rq->path, rq->argv, rq->envp);
    fail(rq, PORTER_STAGE_EXEC, r);
}

/* One stack serves every child: CLONE_VFORK suspends porter until the child
 * has exec'd or exited, so two children never use it at once. */
#define CHILD_STACK_SIZE (64 * 1024)
static char *child_stack;

pid_t porter_spawn(const struct porter_spawn_request *request)
{
    if (!child_stack) {
        long page = sysconf(_SC_PAGESIZE);
        char *base = mmap(NULL, CHILD_STACK_SIZE + (size_t)page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (base == MAP_FAILED)
            return -errno;
        (void)mprotect(base, (size_t)page, PROT_NONE); /* guard page */
        child_stack = base + page;
    }
    /* clone() wants the top of the stack; keep it 16-byte aligned. */
    char *top = child_stack + CHILD_STACK_SIZE;
    pid_t pid = clone(child_main, top, CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)request);
    if (pid < 0)
        return -errno;
    return pid;
}

/* Detached spawn: no CLONE_VFORK, so porter goes on while the child execs.
 * The child shares porter's memory exactly as a vfork child does, which is
 * why it makes raw system calls only (the errno slot and glibc's locks are
 * porter's, and porter is running). */
pid_t porter_spawn_detached(const struct porter_spawn_request *request, void *stack_top, int *done_word)
{
    /* Non-zero before the child exists: CLONE_CHILD_SETTID writes the tid
     * only once the child runs, and the only change to zero is the kernel's
     * clear at exec or exit. */
    __atomic_store_n(done_word, -1, __ATOMIC_RELEASE);
    pid_t pid = clone(child_main, stack_top, CLONE_VM | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD,
                      (void *)request, NULL, NULL, done_word);
    if (pid < 0) {
        __atomic_store_n(done_word, 0, __ATOMIC_RELEASE);
        return -errno;
    }
    return pid;
}

int porter_spawn_released(const int *done_word)
{
    return __atomic_load_n(done_word, __ATOMIC_ACQUIRE) == 0;
}

void *porter_stack_create(size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    char *base = mmap(NULL, size + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    (void)mprotect(base, (size_t)page, PROT_NONE);
    return base + page;
}

void porter_stack_destroy(void *stack, size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    munmap((char *)stack - page, size + (size_t)page);
}

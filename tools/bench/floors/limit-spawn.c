/* limit-spawn - the floor for spawning brokers: the cheapest program that
 * does the job, with nothing else.
 *
 *   limit-spawn --listen ADDR [--listen ADDR...] -- PROG [ARG...]
 *       Accept=yes floor: poll, accept, posix_spawn(PROG) with the
 *       connection on fds 0 and 1, close, repeat. One thread; SIGCHLD via
 *       signalfd, so it never wakes up while idle.
 *   limit-spawn --wait --listen ADDR -- PROG [ARG...]
 *       Accept=no floor: when the listener is readable, vfork+exec PROG with
 *       it on fd 3, LISTEN_FDS=1 and LISTEN_PID (written by the child into a
 *       prepared environment slot), and ignore the listener until PROG exits.
 *
 * ADDR is HOST:PORT (IPv4) or a Unix socket path. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXL 4096
extern char **environ;

static int listen_on(const char *addr)
{
    int fd;
    if (addr[0] == '/') {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        strncpy(un.sun_path, addr, sizeof un.sun_path - 1);
        unlink(addr);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) < 0)
            return -1;
    } else {
        char host[64];
        const char *colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= sizeof host)
            return -1;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = 0;
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
        inet_pton(AF_INET, host, &in.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd < 0 || bind(fd, (struct sockaddr *)&in, sizeof in) < 0)
            return -1;
    }
    return listen(fd, 4096) < 0 ? -1 : fd;
}

/* vfork + exec with the listener on fd 3; the child writes its pid into
 * the environment slot. A function of its own so the parent's locals are
 * not shared with the child. */
static __attribute__((noinline)) pid_t start_wait(int lfd, char **child, char **wenv, char *pidslot, const sigset_t *empty)
{
    pid_t pid = vfork();
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, empty, NULL);
        if (lfd == 3)
            fcntl(3, F_SETFD, 0); /* dup2(3, 3) would leave FD_CLOEXEC set */
        else
            dup2(lfd, 3);
        fcntl(3, F_SETFL, 0);
        snprintf(pidslot, 21, "%ld", (long)getpid());
        execve(child[0], child, wenv);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv)
{
    int wait_mode = 0, nl = 0, i;
    static struct pollfd p[MAXL + 1];
    static pid_t owner[MAXL + 1];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--wait"))
            wait_mode = 1;
        else if (!strcmp(argv[i], "--listen") && i + 1 < argc && nl < MAXL) {
            int fd = listen_on(argv[++i]);
            if (fd < 0) {
                perror(argv[i]);
                return 1;
            }
            p[++nl] = (struct pollfd){.fd = fd, .events = POLLIN};
        } else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
    }
    if (!nl || i >= argc) {
        fprintf(stderr, "usage: limit-spawn [--wait] --listen ADDR... -- PROG [ARG...]\n");
        return 2;
    }
    char **child = argv + i;
    sigset_t chld, empty;
    sigemptyset(&empty);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    p[0] = (struct pollfd){.fd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK), .events = POLLIN};
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &empty);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    /* The wait-mode environment: LISTEN_FDS=1 and a slot for LISTEN_PID. */
    static char pidvar[32] = "LISTEN_PID=";
    char *wenv[] = {"LISTEN_FDS=1", pidvar, NULL};

    for (;;) {
        if (poll(p, (nfds_t)nl + 1, -1) < 0 && errno != EINTR)
            return 1;
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(p[0].fd, &si, sizeof si) > 0)
                ;
            pid_t pid;
            while ((pid = waitpid(-1, NULL, WNOHANG)) > 0)
                for (int k = 1; k <= nl; k++)
                    if (owner[k] == pid) {
                        owner[k] = 0;
                        p[k].events = POLLIN;
                    }
        }
        for (int k = 1; k <= nl; k++) {
            if (!(p[k].revents & POLLIN))
                continue;
            if (wait_mode) {
                if (owner[k])
                    continue;
                pid_t pid = start_wait(p[k].fd, child, wenv, pidvar + 11, &empty);
                if (pid > 0) {
                    owner[k] = pid;
                    p[k].events = 0;
                }
                continue;
            }
            int c;
            while ((c = accept4(p[k].fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                posix_spawn_file_actions_t fa;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_adddup2(&fa, c, 0);
                posix_spawn_file_actions_adddup2(&fa, c, 1);
                pid_t pid;
                posix_spawn(&pid, child[0], &fa, &at, child, environ);
                posix_spawn_file_actions_destroy(&fa);
                close(c);
            }
        }
    }
}

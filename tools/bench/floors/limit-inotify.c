/* limit-inotify - the floor of the path scenario: the least a file trigger
 * can do. One inotify watch for IN_CLOSE_WRITE | IN_MOVED_TO on DIR, and one
 * posix_spawn of `PROG LOG NAME` per event, children reaped by the kernel
 * (SIGCHLD ignored). No queue, no limit, no dedupe, no rescan: an inotify
 * queue overflow is counted on stderr and its files are lost.
 *
 *   limit-inotify DIR PROG LOG */
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: limit-inotify DIR PROG LOG\n");
        return 2;
    }
    int ifd = inotify_init1(IN_CLOEXEC);
    if (ifd < 0 || inotify_add_watch(ifd, argv[1], IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR) < 0) {
        perror("limit-inotify");
        return 1;
    }
    signal(SIGCHLD, SIG_IGN);
    posix_spawnattr_t attr;
    sigset_t defaults, none;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGCHLD);
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    unsigned long overflows = 0;
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t r = read(ifd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("limit-inotify: read");
            return 1;
        }
        for (char *p = buf; p < buf + r;) {
            struct inotify_event *e = (struct inotify_event *)p;
            p += sizeof *e + e->len;
            if (e->mask & IN_Q_OVERFLOW) {
                fprintf(stderr, "limit-inotify: queue overflow %lu, events lost\n", ++overflows);
                continue;
            }
            if (!e->len || e->name[0] == '.')
                continue;
            char *child[] = {argv[2], argv[3], e->name, NULL};
            pid_t pid;
            int err = posix_spawn(&pid, argv[2], NULL, &attr, child, environ);
            if (err)
                fprintf(stderr, "limit-inotify: spawn: %s\n", strerror(err));
        }
    }
}

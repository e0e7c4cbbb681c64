/* fdwait - the Accept=no service of the cold scenario. Takes its listening
 * socket from fd 3 (LISTEN_FDS with LISTEN_PID = its pid) or fd 0 (inetd
 * "wait"), answers one connection with "hello\n", writes its pid to the
 * pid file (after answering, so file I/O is not in the measured path) and
 * exits, so every trial is a cold start. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *pidfile = argc > 2 && !strcmp(argv[1], "--pidfile") ? argv[2] : NULL;
    const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
    int l = fds && pid && atol(pid) == (long)getpid() ? 3 : 0;
    int c;
    while ((c = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            return 1;
    static const char msg[] = "hello\n";
    if (write(c, msg, sizeof msg - 1) < 0)
        return 1;
    close(c);
    if (pidfile) {
        char tmp[4096], b[32];
        snprintf(tmp, sizeof tmp, "%s.tmp", pidfile);
        int f = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int n = snprintf(b, sizeof b, "%ld\n", (long)getpid());
        if (f >= 0 && write(f, b, (size_t)n) == n && close(f) == 0)
            rename(tmp, pidfile);
    }
    return 0;
}

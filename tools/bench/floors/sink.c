/* sink - a bulk backend: each connection starts with "BULK <n>\n"; sink
 * reads exactly n more bytes, discards them, answers "<n>\n" and closes (one
 * child per connection). The relay's throughput is measured through it. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 18];

static void serve(int c)
{
    unsigned long long want = 0, got = 0;
    ssize_t r = read(c, buf, sizeof buf);
    if (r <= 0) return;
    char *nl = memchr(buf, '\n', (size_t)r);
    if (!nl || strncmp(buf, "BULK ", 5)) return;
    want = strtoull(buf + 5, NULL, 10);
    got = (unsigned long long)(r - (nl + 1 - buf));
    while (got < want) {
        r = read(c, buf, sizeof buf);
        if (r <= 0) break;
        got += (unsigned long long)r;
    }
    char line[32];
    int n = snprintf(line, sizeof line, "%llu\n", got);
    (void)!write(c, line, (size_t)n);
}

int main(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "--listen")) return 2;
    const char *colon = strrchr(argv[2], ':');
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    char host[64] = {0};
    memcpy(host, argv[2], (size_t)(colon - argv[2]));
    inet_pton(AF_INET, host, &in.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&in, sizeof in) < 0 || listen(fd, 1024) < 0) return 1;
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        if (fork() == 0) {
            close(fd);
            serve(c);
            _exit(0);
        }
        close(c);
    }
}

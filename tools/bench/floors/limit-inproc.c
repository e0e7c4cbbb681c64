/* limit-inproc - no spawning at all: accept and write "hello\n" in-process.
 * What a connection costs on this machine, for reference. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
    if (bind(fd, (struct sockaddr *)&in, sizeof in) < 0 || listen(fd, 4096) < 0) return 1;
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        (void)!write(c, "hello\n", 6);
        close(c);
    }
}

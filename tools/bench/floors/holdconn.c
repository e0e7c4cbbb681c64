/* holdconn - an Accept=no service that takes one connection from fd 3
 * (LISTEN_FDS) and holds it open until killed: porter's idle check then
 * finds an empty queue and one open connection, so every check walks the
 * host's TCP sockets through sock_diag (the idle-measure scenario). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int c;
    while ((c = accept4(3, NULL, NULL, SOCK_CLOEXEC)) < 0)
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            return 1;
    for (;;)
        pause();
}

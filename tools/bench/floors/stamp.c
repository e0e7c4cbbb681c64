/* stamp - the job every file trigger runs in the path scenario.
 *
 *   stamp LOG NAME    append "NAME START_NS" to LOG
 *
 * START_NS is CLOCK_REALTIME, read first thing, so the line says when the job
 * started. One O_APPEND write per line: concurrent jobs never interleave. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc != 3) {
        fprintf(stderr, "usage: stamp LOG NAME\n");
        return 2;
    }
    char line[1024];
    int n = snprintf(line, sizeof line, "%s %llu\n", argv[2],
                     (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    if (n <= 0 || (size_t)n >= sizeof line)
        return 1;
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        return 1;
    close(fd);
    return 0;
}

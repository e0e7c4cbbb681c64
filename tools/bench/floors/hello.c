/* hello - the per-connection service of the spawn scenarios: writes
 * "hello\n" to fd 1 and exits. Tiny, so the benchmark measures the broker. */
#include <unistd.h>

int main(void)
{
    static const char msg[] = "hello\n";
    return write(1, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1) ? 0 : 1;
}

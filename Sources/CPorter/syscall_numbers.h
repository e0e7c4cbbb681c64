/* System call numbers older libc headers may lack (the same on x86_64 and
 * aarch64: both use the generic numbers for these). */
#ifndef PORTER_SYSCALL_NUMBERS_H
#define PORTER_SYSCALL_NUMBERS_H
#include <sys/syscall.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#endif

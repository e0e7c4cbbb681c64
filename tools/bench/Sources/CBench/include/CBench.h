/* Kernel interfaces the Glibc module does not export to Swift. */
#ifndef CBENCH_H
#define CBENCH_H
#include <sys/epoll.h>
#endif

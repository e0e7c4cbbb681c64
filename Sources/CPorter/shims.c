/* shims.c - C interfaces Swift cannot call directly: variadic functions,
 * macros, and system calls glibc may not wrap. */
#define _GNU_SOURCE
#include "CPorter.h"
#include "syscall_numbers.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define PID_FS_MAGIC 0x50494446

int porter_errno(void) { return errno; }
void porter_set_errno(int value) { errno = value; }

int porter_fcntl_int(int fd, int cmd, int arg) { return fcntl(fd, cmd, arg); }
int porter_open(const char *path, int flags, unsigned mode) { return open(path, flags, (mode_t)mode); }
int porter_openat(int dirfd, const char *path, int flags, unsigned mode)
{
    return openat(dirfd, path, flags, (mode_t)mode);
}
int porter_accept4(int fd, void *addr, unsigned *addrlen, int flags)
{
    return accept4(fd, (struct sockaddr *)addr, (socklen_t *)addrlen, flags);
}

int porter_peer_credentials(int fd, struct porter_peer_credentials *out)
{
    struct ucred c;
    socklen_t len = sizeof c;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0)
        return -1;
    out->pid = c.pid;
    out->uid = c.uid;
    out->gid = c.gid;
    return 0;
}

int porter_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }
int porter_ioctl_int(int fd, unsigned long request, int *value) { return ioctl(fd, request, value); }

int porter_wifexited(int status) { return WIFEXITED(status); }
int porter_wexitstatus(int status) { return WEXITSTATUS(status); }
int porter_wifsignaled(int status) { return WIFSIGNALED(status); }
int porter_wtermsig(int status) { return WTERMSIG(status); }
int porter_wcoredump(int status) { return WCOREDUMP(status); }

int porter_pidfd_open(pid_t pid)
{
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

int porter_pidfs_supported(void)
{
    int fd = porter_pidfd_open(getpid());
    if (fd < 0)
        return 0;
    struct statfs sfs;
    int ok = fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == PID_FS_MAGIC;
    close(fd);
    return ok;
}

int porter_close_range(unsigned first, unsigned last, unsigned flags)
{
    long r = syscall(SYS_close_range, first, last, flags);
    return r < 0 ? -errno : 0;
}

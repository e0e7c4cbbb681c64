/* shims.c - C interfaces Swift cannot call directly: variadic functions,
 * macros, and system calls glibc may not wrap. */
#define _GNU_SOURCE
#include "CPorter.h"
#include "syscall_numbers.h"

#include <elf.h>
#include <linux/filter.h>
#include <errno.h>
#include <link.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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

int porter_pidfd_send_signal(int pidfd, int sig)
{
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
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

int porter_set_child_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}

int porter_raise_nofile(uint64_t *old_soft, uint64_t *hard)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -errno;
    *old_soft = r.rlim_cur;
    *hard = r.rlim_max;
    if (r.rlim_cur == r.rlim_max)
        return 0;
    r.rlim_cur = r.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &r) == 0 ? 0 : -errno;
}

void porter_trim_heap(void) { malloc_trim(0); }

static int find_text(struct dl_phdr_info *info, size_t size, void *out)
{
    (void)size;
    /* The first object is the executable itself. */
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && !(ph->p_flags & PF_W)) {
            uintptr_t *range = out;
            range[0] = info->dlpi_addr + ph->p_vaddr;
            range[1] = range[0] + ph->p_memsz;
            return 1;
        }
    }
    return 1;
}

long porter_release_text(void)
{
    uintptr_t range[2] = {0, 0};
    dl_iterate_phdr(find_text, range);
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (range[0] + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t end = range[1] & ~((uintptr_t)page - 1);
    if (end <= start)
        return 0;
    /* Read-only and never written: MADV_DONTNEED only drops the mappings,
     * the next access maps the page-cache page again. */
    if (madvise((void *)start, end - start, MADV_DONTNEED) != 0)
        return -errno;
    return (long)(end - start);
}

long porter_notify_receive(int fd, char *text, size_t size, int32_t *pid, uint32_t *uid,
                           int *fds, int max_fds, int *nfds, int *truncated)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
    } control;
    struct iovec iov = {.iov_base = text, .iov_len = size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0)
        return -errno;
    *pid = 0;
    *uid = (uint32_t)-1;
    *nfds = 0;
    /* The kernel cut the control data (fds past our room, or past the fd
     * limit: the message lost fds) or the text: the caller rejects it. */
    *truncated = (msg.msg_flags & MSG_CTRUNC) ? 1 : ((size_t)n > size ? 2 : 0);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(c), sizeof u);
            *pid = u.pid;
            *uid = u.uid;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < count; i++) {
                int f;
                memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                if (*nfds < max_fds)
                    fds[(*nfds)++] = f;
                else {
                    close(f);
                    *truncated = 1;
                }
            }
        }
    }
    if ((size_t)n > size)
        n = (ssize_t)size; /* truncated: rejected by the caller */
    return n;
}

int porter_memfd_create(const char *name)
{
    long r = syscall(SYS_memfd_create, name, MFD_CLOEXEC);
    return r < 0 ? -errno : (int)r;
}

int porter_execve(const char *path, char *const argv[], char *const envp[])
{
    execve(path, argv, envp);
    return -errno;
}

ssize_t porter_splice(int from, int to, size_t len, unsigned int flags)
{
    ssize_t r = splice(from, NULL, to, NULL, len, flags);
    return r < 0 ? -errno : r;
}

int porter_set_pipe_size(int fd, int size)
{
    int r = fcntl(fd, F_SETPIPE_SZ, size);
    return r < 0 ? -errno : r;
}

int porter_socket_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

int porter_reset_on_close(int fd)
{
    struct linger l = { .l_onoff = 1, .l_linger = 0 };
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0 ? -errno : 0;
}

int porter_socket_filter(int fd, const struct porter_bpf_insn *insns, unsigned short count)
{
    if (count == 0) {
        int dummy = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof dummy) == 0 || errno == ENOENT)
            return 0;
        return -errno;
    }
    _Static_assert(sizeof(struct porter_bpf_insn) == sizeof(struct sock_filter), "sock_filter layout");
    struct sock_fprog prog = { .len = count, .filter = (struct sock_filter *)insns };
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0 ? 0 : -errno;
}

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: the Unix socket (abstract addresses, peer
 * credentials, messages carrying fds) and errno mapping.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "transports/shm/shm.h"

int shm_status(int err)
{
    switch (err) {
    case ENOMEM:
    case ENOBUFS:
        return DISCO_ENOMEM;
    case EAGAIN:
        return DISCO_EAGAIN;
    case EACCES:
    case EPERM:
        return DISCO_EPERM;
    case ESRCH:
        return DISCO_ENOPROC;
    case ECONNRESET:
    case EPIPE:
        return DISCO_ECLOSED;
    case EMFILE:
    case ENFILE:
        return DISCO_ESYS;
    default:
        return DISCO_EIO;
    }
}

int shm_fail_errno(int err, const char *what)
{
    char buf[128];
    const char *msg = strerror_r(err, buf, sizeof(buf)); /* GNU variant */
    return disco_error_set(shm_status(err), "shm: %s: %s", what, msg);
}

/* A name character: printable, no space, nothing a URL or shell cares for. */
static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
}

int shm_addr_parse(const char *address, struct sockaddr_un *sa, socklen_t *len)
{
    if (!address)
        return disco_error_set(DISCO_EINVAL, "shm: NULL address");
    size_t slen = strlen(SHM_SCHEME);
    if (strncmp(address, SHM_SCHEME, slen) != 0)
        goto bad;
    const char *name = address + slen;
    size_t n = 0;
    while (name[n] && n <= SHM_NAME_MAX && name_char(name[n]))
        n++;
    if (n == 0 || n > SHM_NAME_MAX || name[n] != '\0')
        goto bad;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path + 1, name, n); /* sun_path[0] = 0: abstract */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    return 0;
bad:
    return disco_error_set(DISCO_EINVAL,
                           "shm: bad address \"%s\" (want shm://@NAME, NAME of "
                           "at most %d letters, digits, '-', '_' or '.')",
                           address, SHM_NAME_MAX);
}

int shm_listen(int *lfd, char *address, size_t len)
{
    uint64_t rnd;
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
        return shm_fail_errno(errno, "getrandom for a socket name");
    snprintf(address, len, "%sdisco-%ld-%016llx", SHM_SCHEME, (long)getpid(),
             (unsigned long long)rnd);
    struct sockaddr_un sa;
    socklen_t salen;
    int rc = shm_addr_parse(address, &sa, &salen);
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shm_fail_errno(errno, "socket to listen on");
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, SOMAXCONN) != 0) {
        rc = shm_fail_errno(errno, "bind/listen on an abstract Unix socket");
        close(fd);
        return rc;
    }
    *lfd = fd;
    return 0;
}

int shm_peer_check(int fd, pid_t *pid)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return shm_fail_errno(errno, "SO_PEERCRED");
    if (cr.uid != getuid())
        return disco_error_set(DISCO_EPERM,
                               "shm: peer pid %ld runs as uid %ld, not ours (%ld)",
                               (long)cr.pid, (long)cr.uid, (long)getuid());
    *pid = cr.pid;
    return 0;
}

int shm_sock_send(int fd, const void *buf, size_t len, const int *fds, int nfds)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(2 * sizeof(int))];
    } ctl;
    struct iovec v = {(void *)buf, len};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        m.msg_control = ctl.space;
        m.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    for (;;) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w == (ssize_t)len)
            return 0;
        if (w >= 0)
            return -EMSGSIZE;
        if (errno != EINTR)
            return -errno;
    }
}

/* Takes the fds out of a received message's control data: the first 2 into
 * fds, any further one closed. */
static void take_fds(struct msghdr *m, int *fds, int *nfds)
{
    *nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (*nfds < 2)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
}

ssize_t shm_sock_recv(int fd, void *buf, size_t len, int *fds, int *nfds)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec v = {buf, len};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl.space,
                       .msg_controllen = sizeof(ctl.space)};
    ssize_t r;
    do
        r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        *nfds = 0;
        return -errno;
    }
    take_fds(&m, fds, nfds);
    return r;
}

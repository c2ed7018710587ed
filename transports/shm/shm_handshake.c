/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared-memory transport: both ends of the handshake, and the end of a
 * connection as its socket reports it.
 *
 * The connector sends a hello (magic, version) carrying its segment's memfd
 * and its eventfd; the acceptor maps the segment, keeps the eventfd and
 * replies with its own. The connector writes into its ring from the start:
 * until the reply brings the acceptor's eventfd it cannot wake the
 * acceptor, so on the reply it wakes it once, in case it went to sleep in
 * between (a wake-up the flag asked for and that had nowhere to go).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "transports/shm/shm.h"

#define SHM_HELLO_MAGIC 0x6f6c6568u /* "helo" */
#define SHM_REPLY_MAGIC 0x796c7072u /* "rply" */
#define SHM_ACCEPTS_PER_CALL 64

typedef struct shm_hello {
    uint32_t magic, version;
} shm_hello;

static void close_fds(const int *fds, int nfds)
{
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
}

/* The connection's segment and our eventfd go to the acceptor. */
static int dial(shm_transport *tp, const char *address, int *sock, pid_t *pid,
                shm_seg *seg)
{
    struct sockaddr_un sa;
    socklen_t salen;
    int rc = shm_addr_parse(address, &sa, &salen);
    if (rc)
        return rc;
    char what[sizeof(tp->address) + 32];
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return shm_fail_errno(errno, "socket to connect");
    if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
        snprintf(what, sizeof(what), "connect to %s", address);
        rc = shm_fail_errno(errno, what);
        goto fail;
    }
    if ((rc = shm_peer_check(fd, pid)) != 0)
        goto fail;
    int memfd;
    if ((rc = shm_seg_create(seg, SHM_RING_SIZE, &memfd)) != 0) {
        rc = shm_fail_errno(-rc, "creating a shared segment (memfd)");
        goto fail;
    }
    shm_hello h = {SHM_HELLO_MAGIC, SHM_SEG_VERSION};
    int fds[2] = {memfd, tp->evfd};
    rc = shm_sock_send(fd, &h, sizeof(h), fds, 2);
    close(memfd); /* the message holds it now, the mapping holds the memory */
    if (rc) {
        shm_seg_unmap(seg);
        snprintf(what, sizeof(what), "sending the hello to %s", address);
        rc = shm_fail_errno(-rc, what);
        goto fail;
    }
    *sock = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int shm_connect(disco_transport *dtp, const char *address, void *ctx,
                disco_conn **out)
{
    if (!dtp || !out)
        return disco_error_set(DISCO_EINVAL, "shm: connect: bad arguments");
    shm_transport *tp = shm_tp(dtp);
    int sock = -1;
    pid_t pid = 0;
    shm_seg seg = {0};
    int rc = dial(tp, address, &sock, &pid, &seg);
    if (rc)
        return rc;
    shm_conn *c = shm_conn_new(tp, sock, SHM_OPEN, address + strlen(SHM_SCHEME) - 1,
                               ctx);
    if (!c) {
        shm_seg_unmap(&seg);
        close(sock);
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory");
    }
    c->seg = seg;
    c->peer_pid = pid;
    if ((rc = shm_conn_watch(c)) != 0) {
        rc = shm_fail_errno(-rc, "epoll_ctl for a connection");
        shm_conn_close(shm_dc(c));
        return rc;
    }
    shm_conn_link(c);
    /* A progress asleep since before the link did not ask this ring to wake
     * it (see shm_conn_link). */
    if (atomic_load(&tp->sleeping) && shm_ring_arm_rx(&c->seg))
        shm_wake(tp);
    *out = shm_dc(c);
    return 0;
}

/* The hello on an accepted socket (mu held): 1 when c is now open, 0 when
 * it has not arrived yet, -1 when c must be dropped. */
static int take_hello_locked(shm_conn *c)
{
    shm_hello h;
    int fds[2], nfds;
    ssize_t r = shm_sock_recv(c->sock, &h, sizeof(h), fds, &nfds);
    if (r == -EAGAIN)
        return 0;
    if (r != (ssize_t)sizeof(h) || nfds != 2 || h.magic != SHM_HELLO_MAGIC ||
        h.version != SHM_SEG_VERSION || shm_seg_map(&c->seg, fds[0]) != 0) {
        close_fds(fds, nfds);
        return -1;
    }
    close(fds[0]);
    c->peer_evfd = fds[1];
    shm_hello reply = {SHM_REPLY_MAGIC, SHM_SEG_VERSION};
    if (shm_sock_send(c->sock, &reply, sizeof(reply), &c->tp->evfd, 1) != 0)
        return -1;
    c->state = SHM_OPEN;
    return 1;
}

/* Takes the hello if it is there and announces c; drops c if it is bad. */
static int try_open(shm_conn *c)
{
    shm_transport *tp = c->tp;
    pthread_mutex_lock(&c->mu);
    int r = take_hello_locked(c);
    if (r == 1) {
        shm_conn_cb_enter_locked(c);
        tp->cb.on_accept(tp->ctx, shm_dc(c));
        shm_conn_cb_leave_locked(c);
    }
    shm_conn_unlock(c);
    if (r < 0 && !shm_conn_shutdown(c, DISCO_ECLOSED)) /* the core never saw it */
        shm_conn_free(c);
    return r > 0;
}

int shm_accept_all(shm_transport *tp)
{
    int n = 0;
    for (int i = 0; i < SHM_ACCEPTS_PER_CALL; i++) {
        int fd = accept4(tp->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            break; /* EAGAIN; or EMFILE and the like: retried next call */
        }
        pid_t pid;
        if (shm_peer_check(fd, &pid) != 0) { /* another uid: refused */
            close(fd);
            continue;
        }
        char peer[SHM_PEER_LEN];
        snprintf(peer, sizeof(peer), "pid:%ld", (long)pid);
        shm_conn *c = shm_conn_new(tp, fd, SHM_ACCEPTING, peer, NULL);
        if (!c) {
            close(fd);
            continue;
        }
        c->peer_pid = pid;
        shm_conn_link(c);
        if (shm_conn_watch(c) != 0) {
            if (!shm_conn_shutdown(c, DISCO_ECLOSED))
                shm_conn_free(c);
            continue;
        }
        n += try_open(c); /* the hello is most likely there already */
    }
    return n;
}

/* The acceptor's reply (mu held): its eventfd, then one wake-up. */
static void take_reply_locked(shm_conn *c, const shm_hello *h, ssize_t r,
                              const int *fds, int nfds)
{
    if (r != (ssize_t)sizeof(*h) || nfds != 1 || h->magic != SHM_REPLY_MAGIC) {
        close_fds(fds, nfds);
        shm_conn_fail_locked(c, DISCO_EPROTO, "shm: bad handshake reply from %s",
                             c->peer);
        return;
    }
    c->peer_evfd = fds[0];
    shm_conn_wake_peer_locked(c);
}

bool shm_conn_try_reply_locked(shm_conn *c)
{
    shm_hello h;
    int fds[2], nfds;
    ssize_t r = shm_sock_recv(c->sock, &h, sizeof(h), fds, &nfds);
    if (r <= 0) /* not there yet; an end or error is progress's to report */
        return false;
    take_reply_locked(c, &h, r, fds, nfds);
    return c->peer_evfd >= 0;
}

/* The peer's end of the socket closed (mu held): what is left in the ring
 * is delivered first; then on_close, 0 after the peer's conn_close. */
static int peer_gone_locked(shm_conn *c)
{
    int n = shm_conn_read_locked(c, SIZE_MAX);
    if (c->state != SHM_OPEN)
        return n;
    if (c->peer_evfd < 0)
        shm_conn_fail_locked(c, DISCO_EIO,
                             "shm: %s closed the connection before accepting it",
                             c->peer);
    else if (atomic_load(&c->seg.hdr->closed[1 - c->seg.side]))
        shm_conn_fail_locked(c, 0, "shm: %s closed the connection", c->peer);
    else
        shm_conn_fail_locked(c, DISCO_EPROCEXIT,
                             "shm: peer %s (pid %ld) exited without closing the "
                             "connection",
                             c->peer, (long)c->peer_pid);
    return n;
}

int shm_conn_sock_event(shm_conn *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->state == SHM_ACCEPTING) {
        pthread_mutex_unlock(&c->mu);
        return try_open(c);
    }
    int n = 0;
    if (c->state == SHM_OPEN) {
        shm_hello h;
        int fds[2], nfds;
        ssize_t r = shm_sock_recv(c->sock, &h, sizeof(h), fds, &nfds);
        if (r == 0 || r == -ECONNRESET) { /* reset: it left our reply unread */
            n = peer_gone_locked(c);
        } else if (r > 0 && c->peer_evfd < 0) {
            take_reply_locked(c, &h, r, fds, nfds);
        } else if (r > 0) {
            close_fds(fds, nfds);
            shm_conn_fail_locked(c, DISCO_EPROTO,
                                 "shm: unexpected message from %s", c->peer);
        } else if (r != -EAGAIN) {
            char buf[128];
            shm_conn_fail_locked(c, shm_status((int)-r), "shm: socket of %s: %s",
                                 c->peer, strerror_r((int)-r, buf, sizeof(buf)));
        }
    }
    shm_conn_unlock(c);
    return n;
}

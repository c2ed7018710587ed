/* SPDX-License-Identifier: BSD-3-Clause */
/* TCP transport: the transport object (init, fini, address, wake-up),
 * connect, and the ops table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "transports/tcp/tcp.h"

void tcp_wake(tcp_transport *tp)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is full, so progress is awake anyway. */
    (void)!write(tp->evfd, &one, sizeof(one));
}

void tcp_interrupt(disco_transport *dtp)
{
    if (dtp)
        tcp_wake(tcp_tp(dtp));
}

/* The epoll instance itself polls readable when one of its sockets (or the
 * eventfd) has an event. */
int tcp_wait_fd(disco_transport *dtp) { return tcp_tp(dtp)->epfd; }

int tcp_wait_arm(disco_transport *dtp)
{
    tcp_transport *tp = tcp_tp(dtp);
    pthread_mutex_lock(&tp->lock);
    /* A connection out of epoll (tcp_progress.c) would not wake the
     * sleeper: the progress call the caller makes instead puts it back. */
    int pending = tp->ready != NULL || tp->unwatched != NULL;
    tp->rewatch = tp->unwatched != NULL;
    if (!pending) { /* as progress does before its epoll_wait */
        tp->sleeping = true;
        tp->woken = false;
    }
    tp->hot_polls = TCP_HOT_POLLS; /* the progress call after the wait asks epoll */
    pthread_mutex_unlock(&tp->lock);
    return pending;
}

static int epoll_add(tcp_transport *tp, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(tp->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void close_fds(tcp_transport *tp)
{
    if (tp->lfd >= 0)
        close(tp->lfd);
    if (tp->evfd >= 0)
        close(tp->evfd);
    if (tp->epfd >= 0)
        close(tp->epfd);
}

int tcp_init(disco_transport **out, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx)
{
    (void)arg; /* nothing to choose */
    if (!out || !cb || !cb->on_accept || !cb->on_recv || !cb->on_close ||
        !cb->on_sent)
        return disco_error_set(DISCO_EINVAL,
                               "tcp: init needs an output and all four callbacks");
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = tcp_host_parse(host, &ss, &sslen);
    if (rc)
        return rc;
    tcp_transport *tp = calloc(1, sizeof(*tp));
    if (!tp)
        return disco_error_set(DISCO_ENOMEM, "tcp: out of memory");
    tp->cb = *cb;
    tp->ctx = ctx;
    tp->epfd = tp->lfd = tp->evfd = -1;
    pthread_mutex_init(&tp->lock, NULL);

    char where[TCP_PEER_LEN];
    tcp_addr_format((struct sockaddr *)&ss, where, sizeof(where));
    int one = 1;
    if ((tp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = tcp_fail_errno(errno, "epoll_create1", "for a transport");
        goto fail;
    }
    if ((tp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = tcp_fail_errno(errno, "eventfd", "for a transport");
        goto fail;
    }
    tp->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (tp->lfd < 0) {
        rc = tcp_fail_errno(errno, "socket to listen on", where);
        goto fail;
    }
    (void)setsockopt(tp->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    tcp_set_nodelay(tp->lfd); /* accepted sockets inherit it; set again anyway */
    if (bind(tp->lfd, (struct sockaddr *)&ss, sslen) != 0) {
        rc = tcp_fail_errno(errno, "bind", where);
        goto fail;
    }
    if (listen(tp->lfd, SOMAXCONN) != 0) {
        rc = tcp_fail_errno(errno, "listen on", where);
        goto fail;
    }
    sslen = sizeof(ss);
    if (getsockname(tp->lfd, (struct sockaddr *)&ss, &sslen) != 0) {
        rc = tcp_fail_errno(errno, "getsockname of", where);
        goto fail;
    }
    tcp_addr_format((struct sockaddr *)&ss, where, sizeof(where));
    snprintf(tp->address, sizeof(tp->address), "tcp://%s", where);
    if (epoll_add(tp, tp->lfd, &tp->lfd) != 0 ||
        epoll_add(tp, tp->evfd, &tp->evfd) != 0) {
        rc = tcp_fail_errno(errno, "epoll_ctl", "for a transport");
        goto fail;
    }
    *out = (disco_transport *)(void *)tp;
    return 0;
fail:
    close_fds(tp);
    pthread_mutex_destroy(&tp->lock);
    free(tp);
    return rc;
}

int tcp_local_address(disco_transport *dtp, char *buf, size_t len)
{
    if (!dtp || !buf)
        return disco_error_set(DISCO_EINVAL, "tcp: local_address: bad arguments");
    tcp_transport *tp = tcp_tp(dtp);
    size_t need = strlen(tp->address) + 1;
    if (len < need)
        return disco_error_set(DISCO_EINVAL,
                               "tcp: local_address needs %zu bytes, got %zu", need,
                               len);
    memcpy(buf, tp->address, need);
    return 0;
}

int tcp_connect(disco_transport *dtp, const char *address, void *ctx,
                disco_conn **out)
{
    if (!dtp || !out)
        return disco_error_set(DISCO_EINVAL, "tcp: connect: bad arguments");
    tcp_transport *tp = tcp_tp(dtp);
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = tcp_addr_parse(address, &ss, &sslen);
    if (rc)
        return rc;
    char peer[TCP_PEER_LEN];
    tcp_addr_format((struct sockaddr *)&ss, peer, sizeof(peer));
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tcp_fail_errno(errno, "socket to connect to", peer);
    tcp_set_nodelay(fd);
    tcp_conn *c = tcp_conn_new(tp, fd, TCP_CONNECTING, peer, ctx);
    if (!c) {
        close(fd);
        return disco_error_set(DISCO_ENOMEM, "tcp: out of memory");
    }
    char ebuf[128];
    pthread_mutex_lock(&c->mu);
    int err = 0;
    if (connect(fd, (struct sockaddr *)&ss, sslen) == 0)
        c->state = TCP_OPEN;
    else if (errno != EINPROGRESS)
        err = errno;
    if (!err)
        err = -tcp_conn_update_events_locked(c);
    /* Even an immediate failure is reported through on_close. */
    if (err)
        tcp_conn_fail_locked(c, tcp_status(err), "tcp: connect to %s: %s", peer,
                             strerror_r(err, ebuf, sizeof(ebuf)));
    pthread_mutex_unlock(&c->mu);
    *out = tcp_dc(c);
    return 0;
}

void tcp_fini(disco_transport *dtp)
{
    if (!dtp)
        return;
    tcp_transport *tp = tcp_tp(dtp);
    /* No progress runs and no other call is made any more: every remaining
     * connection is closed here, its sends completed (written ones with 0,
     * the rest with DISCO_ECLOSED); on_close is not called. */
    for (;;) {
        pthread_mutex_lock(&tp->lock);
        tcp_conn *c = tp->conns;
        pthread_mutex_unlock(&tp->lock);
        if (!c)
            break;
        if (!tcp_conn_shutdown(c, DISCO_ECLOSED))
            tcp_conn_free(c);
    }
    while (tp->zombies) { /* empty: zombies only live while progress runs */
        tcp_conn *z = tp->zombies;
        tp->zombies = z->znext;
        tcp_conn_free(z);
    }
    close_fds(tp);
    pthread_mutex_destroy(&tp->lock);
    free(tp);
}

const disco_transport_ops disco__tcp_ops = {
    .size = sizeof(disco_transport_ops),
    .name = "tcp",
    .caps = DISCO_TRANSPORT_CAP_STREAM | DISCO_TRANSPORT_CAP_CROSS_NODE |
            DISCO_TRANSPORT_CAP_SAME_NODE | DISCO_TRANSPORT_CAP_CLOSE,
    .rank = 0, /* the fallback: everything else is preferred */
    .init = tcp_init,
    .local_address = tcp_local_address,
    .connect = tcp_connect,
    .send = tcp_send_op,
    .send_more = tcp_send_more_op,
    .flush = tcp_flush_op,
    .progress = tcp_progress,
    .interrupt = tcp_interrupt,
    .wait_fd = tcp_wait_fd,
    .wait_arm = tcp_wait_arm,
    .conn_close = tcp_conn_close,
    .conn_peer = tcp_conn_peer,
    .conn_set_context = tcp_conn_set_context,
    .conn_context = tcp_conn_context,
    .fini = tcp_fini,
};

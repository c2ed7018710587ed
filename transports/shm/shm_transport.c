/* SPDX-License-Identifier: BSD-3-Clause */
/* Shared-memory transport: the transport object (init, fini, address,
 * wake-up, waiting) and the ops table. */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "transports/shm/shm.h"

void shm_wake(shm_transport *tp)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is full, so progress is awake anyway. */
    (void)!write(tp->evfd, &one, sizeof(one));
}

void shm_interrupt(disco_transport *dtp)
{
    if (dtp)
        shm_wake(shm_tp(dtp));
}

/* The epoll instance polls readable when the listener, the eventfd (our
 * wake-ups, the peers' and interrupt's) or a connection's socket has an
 * event. */
int shm_wait_fd(disco_transport *dtp) { return shm_tp(dtp)->epfd; }

static int epoll_add(shm_transport *tp, int fd, void *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(tp->epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void close_fds(shm_transport *tp)
{
    if (tp->lfd >= 0)
        close(tp->lfd);
    if (tp->evfd >= 0)
        close(tp->evfd);
    if (tp->epfd >= 0)
        close(tp->epfd);
}

/* Lets peers read our memory with process_vm_readv when Yama restricts
 * ptrace to descendants (EINVAL: no Yama, nothing to allow). */
static void allow_cma(void)
{
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
}

int shm_init(disco_transport **out, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx)
{
    (void)host; /* same host by definition */
    (void)arg;  /* nothing to choose */
    if (!out || !cb || !cb->on_accept || !cb->on_recv || !cb->on_close ||
        !cb->on_sent)
        return disco_error_set(DISCO_EINVAL,
                               "shm: init needs an output and the four stream "
                               "callbacks");
    shm_transport *tp = calloc(1, sizeof(*tp));
    if (!tp)
        return disco_error_set(DISCO_ENOMEM, "shm: out of memory");
    tp->cb = *cb;
    tp->ctx = ctx;
    tp->epfd = tp->lfd = tp->evfd = -1;
    pthread_mutex_init(&tp->lock, NULL);
    int rc;
    if ((tp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = shm_fail_errno(errno, "epoll_create1");
        goto fail;
    }
    if ((tp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = shm_fail_errno(errno, "eventfd");
        goto fail;
    }
    if ((rc = shm_listen(&tp->lfd, tp->address, sizeof(tp->address))) != 0)
        goto fail;
    if (epoll_add(tp, tp->lfd, &tp->lfd) != 0 ||
        epoll_add(tp, tp->evfd, &tp->evfd) != 0) {
        rc = shm_fail_errno(errno, "epoll_ctl");
        goto fail;
    }
    allow_cma();
    *out = (disco_transport *)(void *)tp;
    return 0;
fail:
    close_fds(tp);
    pthread_mutex_destroy(&tp->lock);
    free(tp);
    return rc;
}

int shm_local_address(disco_transport *dtp, char *buf, size_t len)
{
    if (!dtp || !buf)
        return disco_error_set(DISCO_EINVAL, "shm: local_address: bad arguments");
    shm_transport *tp = shm_tp(dtp);
    size_t need = strlen(tp->address) + 1;
    if (len < need)
        return disco_error_set(DISCO_EINVAL,
                               "shm: local_address needs %zu bytes, got %zu", need,
                               len);
    memcpy(buf, tp->address, need);
    return 0;
}

void shm_fini(disco_transport *dtp)
{
    if (!dtp)
        return;
    shm_transport *tp = shm_tp(dtp);
    /* No progress runs and no other call is made any more: every remaining
     * connection is closed here, its sends completed; no on_close. */
    for (;;) {
        pthread_mutex_lock(&tp->lock);
        shm_conn *c = tp->conns;
        pthread_mutex_unlock(&tp->lock);
        if (!c)
            break;
        if (!shm_conn_shutdown(c, DISCO_ECLOSED))
            shm_conn_free(c);
    }
    shm_free_zombies(tp);
    close_fds(tp);
    free(tp->scan);
    pthread_mutex_destroy(&tp->lock);
    free(tp);
}

const disco_transport_ops disco__shm_ops = {
    .size = sizeof(disco_transport_ops),
    .name = "shm",
    .caps = DISCO_TRANSPORT_CAP_STREAM | DISCO_TRANSPORT_CAP_SAME_NODE |
            DISCO_TRANSPORT_CAP_RMA | DISCO_TRANSPORT_CAP_CLOSE,
    .rank = 20, /* above tcp's 0 for peers on this host */
    .eager_max = SHM_EAGER_MAX,
    .init = shm_init,
    .local_address = shm_local_address,
    .connect = shm_connect,
    .send = shm_send_op,
    .send_copy = shm_send_copy_op,
    .progress = shm_progress,
    .interrupt = shm_interrupt,
    .wait_fd = shm_wait_fd,
    .wait_arm = shm_wait_arm,
    .conn_close = shm_conn_close,
    .conn_peer = shm_conn_peer,
    .conn_set_context = shm_conn_set_context,
    .conn_context = shm_conn_context,
    .fini = shm_fini,
    .mem_register = shm_mem_register,
    .mem_deregister = shm_mem_deregister,
    .rma_read = shm_rma_read,
};

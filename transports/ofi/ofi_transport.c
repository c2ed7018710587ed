/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric transport: choosing a provider, opening the fabric objects,
 * fini, local address, connect, and the ops table.
 *
 * DISCO_TRANSPORT=ofi:<provider> names the provider: "shm", "tcp" (meaning
 * tcp;ofi_rxm), "verbs" (verbs;ofi_rxm), or any full libfabric name. Without
 * one, fi_getinfo's first RDM provider that meets the hints wins, except
 * udp;ofi_rxd, sockets and net, which are skipped: rxd over UDP and the
 * deprecated sockets provider are slower than our own TCP transport, and
 * net is experimental in libfabric 1.17. Hints: FI_EP_RDM, FI_TAGGED (+
 * FI_RMA, FI_READ, FI_REMOTE_READ when some provider has them, else
 * without), FI_ORDER_SAS both ways, FI_CONTEXT/FI_CONTEXT2 accepted (every
 * operation's context starts with a struct fi_context2), mr_mode among
 * FI_MR_LOCAL, FI_MR_VIRT_ADDR, FI_MR_ALLOCATED, FI_MR_PROV_KEY (not
 * FI_MR_ENDPOINT nor FI_MR_RAW), FI_THREAD_DOMAIN (we serialise). The
 * completion queue sleeps on an fd (FI_WAIT_FD) when the provider has one;
 * shm (1.17) has none, and is polled (see ofi_progress.c).
 *
 * Socket-based providers bind to host, 127.0.0.1 by default (loopback
 * only, as the TCP transport). The AV holds DISCO_OFI_AV_SIZE entries
 * (default 256; providers such as rxe fail on FI_UNIVERSE_SIZE-sized ones).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "base/env.h"
#include "transports/ofi/ofi.h"

#define OFI_CQ_SIZE 4096
#define OFI_FI_VERSION FI_VERSION(1, 11)

static const char *const skipped[] = {"ofi_rxd", "sockets", "net"};

static bool is_skipped(const char *prov)
{
    for (size_t i = 0; i < sizeof(skipped) / sizeof(*skipped); i++) {
        size_t n = strlen(skipped[i]);
        for (const char *p = prov; (p = strstr(p, skipped[i])) != NULL; p += n)
            if ((p == prov || p[-1] == ';') && (p[n] == '\0' || p[n] == ';'))
                return true;
    }
    return false;
}

static struct fi_info *make_hints(const char *prov, bool rma)
{
    struct fi_info *h = fi_allocinfo();
    if (!h)
        return NULL;
    h->ep_attr->type = FI_EP_RDM;
    h->caps = FI_TAGGED | (rma ? FI_RMA | FI_READ | FI_REMOTE_READ : 0);
    h->mode = FI_CONTEXT | FI_CONTEXT2;
    h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
                              FI_MR_PROV_KEY;
    h->domain_attr->threading = FI_THREAD_DOMAIN;
    h->tx_attr->msg_order = FI_ORDER_SAS;
    h->rx_attr->msg_order = FI_ORDER_SAS;
    if (prov && !(h->fabric_attr->prov_name = strdup(prov))) {
        fi_freeinfo(h);
        return NULL;
    }
    return h;
}

/* The full provider name for DISCO_TRANSPORT's argument. */
static void full_name(const char *arg, char *buf, size_t len)
{
    if (strcmp(arg, "tcp") == 0 || strcmp(arg, "verbs") == 0)
        snprintf(buf, len, "%s;ofi_rxm", arg);
    else
        snprintf(buf, len, "%s", arg);
}

/* The first fitting provider, duplicated; NULL with the last error set. */
static struct fi_info *choose(const char *host, const char *arg)
{
    char name[64];
    if (arg)
        full_name(arg, name, sizeof(name));
    bool is_shm = arg && strcmp(name, "shm") == 0;
    const char *node = is_shm ? NULL : host ? host : "127.0.0.1";
    int last = 0;
    for (int rma = 1; rma >= 0; rma--) {
        struct fi_info *hints = make_hints(arg ? name : NULL, rma);
        struct fi_info *list = NULL, *pick = NULL;
        if (!hints)
            return NULL;
        last = fi_getinfo(OFI_FI_VERSION, node, NULL, node ? FI_SOURCE : 0, hints,
                          &list);
        fi_freeinfo(hints);
        for (struct fi_info *p = last ? NULL : list; p && !pick; p = p->next)
            if (arg || !is_skipped(p->fabric_attr->prov_name))
                pick = fi_dupinfo(p);
        fi_freeinfo(list);
        if (pick)
            return pick;
    }
    disco_error_set(DISCO_ENOSYS,
                    "ofi: no usable libfabric provider%s%s%s (%s); want reliable "
                    "datagrams, tagged messages, send-after-send order",
                    arg ? " named \"" : "", arg ? name : "", arg ? "\"" : "",
                    last ? fi_strerror(-last) : "none fits");
    return NULL;
}

/* "tcp" for "tcp;ofi_rxm": the name in our addresses. */
static void short_name(const char *prov, char *buf, size_t len)
{
    size_t n = strcspn(prov, ";");
    snprintf(buf, len, "%.*s", (int)n, prov);
}

static int open_domain(ofi_transport *tp)
{
    struct fi_info *info = tp->info;
    int rc;
    if ((rc = fi_fabric(info->fabric_attr, &tp->fabric, NULL)))
        return ofi_fail(rc, "fi_fabric");
    if ((rc = fi_domain(tp->fabric, info, &tp->domain, NULL)))
        return ofi_fail(rc, "fi_domain");
    struct fi_av_attr av = {
        .type = info->domain_attr->av_type == FI_AV_UNSPEC ? FI_AV_TABLE
                                                           : info->domain_attr->av_type,
        .count = (size_t)disco__env_long("DISCO_OFI_AV_SIZE", OFI_AV_SIZE),
    };
    if ((rc = fi_av_open(tp->domain, &av, &tp->av, NULL)))
        return ofi_fail(rc, "fi_av_open");
    struct fi_cq_attr cq = {
        .size = OFI_CQ_SIZE,
        .format = FI_CQ_FORMAT_TAGGED,
        .wait_obj = FI_WAIT_FD,
    };
    rc = fi_cq_open(tp->domain, &cq, &tp->cq, NULL);
    if (rc == -FI_ENOSYS || rc == -FI_EINVAL) { /* no fd (shm): we poll */
        cq.wait_obj = FI_WAIT_NONE;
        rc = fi_cq_open(tp->domain, &cq, &tp->cq, NULL);
    }
    if (rc)
        return ofi_fail(rc, "fi_cq_open");
    if (cq.wait_obj == FI_WAIT_FD &&
        (rc = fi_control(&tp->cq->fid, FI_GETWAIT, &tp->cqfd)))
        return ofi_fail(rc, "fi_control(FI_GETWAIT)");
    /* shm 1.17 names its region after our pid and refuses a region left
     * by a killed process whose pid we got, as if that process lived (it
     * looks for /proc/<pid>: ourselves), but removes it: once more works. */
    for (int attempt = 0;; attempt++) {
        if ((rc = fi_endpoint(tp->domain, info, &tp->ep, NULL)))
            return ofi_fail(rc, "fi_endpoint");
        if ((rc = fi_ep_bind(tp->ep, &tp->av->fid, 0)) ||
            (rc = fi_ep_bind(tp->ep, &tp->cq->fid, FI_TRANSMIT | FI_RECV)))
            return ofi_fail(rc, "fi_ep_bind");
        if ((rc = fi_enable(tp->ep)) == 0)
            break;
        if (rc != -FI_EBUSY || attempt > 0)
            return ofi_fail(rc, "fi_enable");
        fi_close(&tp->ep->fid);
        tp->ep = NULL;
    }
    tp->rawlen = sizeof(tp->raw);
    if ((rc = fi_getname(&tp->ep->fid, tp->raw, &tp->rawlen)))
        return ofi_fail(rc, "fi_getname");
    return 0;
}

/* Registers a buffer slab for FI_MR_LOCAL providers. */
static int reg_local(ofi_transport *tp, void *p, size_t len, uint64_t access,
                     struct fid_mr **mr, void **desc)
{
    if (!(tp->info->domain_attr->mr_mode & FI_MR_LOCAL))
        return 0;
    uint64_t want = tp->prov_key ? 0 : atomic_fetch_add(&tp->next_key, 1);
    int rc = fi_mr_reg(tp->domain, p, len, access, 0, want, 0, mr, NULL);
    if (rc)
        return ofi_fail(rc, "fi_mr_reg of the bounce buffers");
    *desc = fi_mr_desc(*mr);
    return 0;
}

static int open_buffers(ofi_transport *tp)
{
    tp->tx_slab = aligned_alloc(4096, (size_t)OFI_NTX * OFI_CHUNK);
    tp->rx_slab = aligned_alloc(4096, (size_t)OFI_NRX * OFI_CHUNK);
    if (!tp->tx_slab || !tp->rx_slab)
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory for buffers");
    int rc = reg_local(tp, tp->tx_slab, (size_t)OFI_NTX * OFI_CHUNK, FI_SEND,
                       &tp->tx_mr, &tp->tx_desc);
    if (!rc)
        rc = reg_local(tp, tp->rx_slab, (size_t)OFI_NRX * OFI_CHUNK, FI_RECV,
                       &tp->rx_mr, &tp->rx_desc);
    if (rc)
        return rc;
    for (int i = OFI_NTX - 1; i >= 0; i--) {
        tp->tx[i].op.kind = OFI_OP_TX;
        tp->tx[i].buf = tp->tx_slab + (size_t)i * OFI_CHUNK;
        ofi_tx_release_locked(tp, &tp->tx[i]);
    }
    for (int i = 0; i < OFI_NRX; i++) {
        tp->rx[i].op.kind = OFI_OP_RX;
        tp->rx[i].buf = tp->rx_slab + (size_t)i * OFI_CHUNK;
        ofi_rx_post_locked(tp, &tp->rx[i]);
        if (!tp->rx[i].posted)
            return disco_error_set(DISCO_EIO, "ofi: cannot post receive buffers");
    }
    return 0;
}

static int epoll_add(ofi_transport *tp, int *fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = fd};
    if (epoll_ctl(tp->epfd, EPOLL_CTL_ADD, *fd, &ev) != 0)
        return disco_error_set(DISCO_ESYS, "ofi: epoll_ctl: %s", strerror(errno));
    return 0;
}

/* The epoll set: the eventfd, and the completion queue's fd or, without
 * one, the polling timer. */
static int open_wait(ofi_transport *tp)
{
    if ((tp->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (tp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
        return disco_error_set(DISCO_ESYS, "ofi: epoll/eventfd: %s", strerror(errno));
    if (tp->cqfd < 0 &&
        (tp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        return disco_error_set(DISCO_ESYS, "ofi: timerfd: %s", strerror(errno));
    int rc = epoll_add(tp, &tp->evfd);
    if (!rc)
        rc = epoll_add(tp, tp->cqfd >= 0 ? &tp->cqfd : &tp->tfd);
    return rc;
}

static void close_fid(struct fid *f)
{
    if (f)
        fi_close(f);
}

/* Frees everything tp holds; connections are gone. */
static void destroy(ofi_transport *tp)
{
    close_fid(tp->ep ? &tp->ep->fid : NULL); /* cancels what is in flight */
    while (tp->closes) {
        ofi_close_msg *m = tp->closes;
        tp->closes = m->next;
        free(m);
    }
    while (tp->reads) {
        ofi_read *r = tp->reads;
        tp->reads = r->next;
        free(r);
    }
    close_fid(tp->tx_mr ? &tp->tx_mr->fid : NULL);
    close_fid(tp->rx_mr ? &tp->rx_mr->fid : NULL);
    close_fid(tp->cq ? &tp->cq->fid : NULL);
    close_fid(tp->av ? &tp->av->fid : NULL);
    close_fid(tp->domain ? &tp->domain->fid : NULL);
    close_fid(tp->fabric ? &tp->fabric->fid : NULL);
    if (tp->info)
        fi_freeinfo(tp->info);
    if (tp->epfd >= 0)
        close(tp->epfd);
    if (tp->evfd >= 0)
        close(tp->evfd);
    if (tp->tfd >= 0)
        close(tp->tfd);
    free(tp->tx_slab);
    free(tp->rx_slab);
    free(tp->slots);
    free(tp->gens);
    free(tp->addrs);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->lock);
    free(tp);
}

static int setup(ofi_transport *tp)
{
    struct fi_info *info = tp->info;
    short_name(info->fabric_attr->prov_name, tp->prov, sizeof(tp->prov));
    tp->virt_addr = info->domain_attr->mr_mode & FI_MR_VIRT_ADDR;
    tp->prov_key = info->domain_attr->mr_mode & FI_MR_PROV_KEY;
    tp->has_rma = (info->caps & (FI_RMA | FI_READ)) == (FI_RMA | FI_READ);
    atomic_init(&tp->next_key, 1);
    size_t max = info->ep_attr->max_msg_size;
    if (max < OFI_CHUNK)
        return disco_error_set(DISCO_ENOSYS,
                               "ofi: %s carries at most %zu bytes per message, we "
                               "need %d",
                               tp->prov, max, OFI_CHUNK);
    if (info->tx_attr->inject_size < OFI_HDR) /* a CLOSE is a header, injected */
        return disco_error_set(DISCO_ENOSYS,
                               "ofi: %s injects at most %zu bytes, we need %zu",
                               tp->prov, info->tx_attr->inject_size, OFI_HDR);
    tp->rma_chunk = max < OFI_RMA_CHUNK ? max : OFI_RMA_CHUNK;
    tp->connect_timeout = (double)disco__env_long("DISCO_OFI_CONNECT_TIMEOUT",
                                                  OFI_CONNECT_TIMEOUT_S);
    int rc = open_domain(tp);
    if (!rc)
        rc = open_wait(tp);
    if (!rc)
        rc = open_buffers(tp);
    if (!rc)
        rc = ofi_addr_format(tp->prov, tp->raw, tp->rawlen, tp->address,
                             sizeof(tp->address));
    return rc;
}

int ofi_init(disco_transport **out, const char *host, const char *arg,
             const disco_transport_callbacks *cb, void *ctx)
{
    if (!out || !cb || !cb->on_accept || !cb->on_recv || !cb->on_close ||
        !cb->on_sent)
        return disco_error_set(DISCO_EINVAL,
                               "ofi: init needs an output and all four callbacks");
    if (arg && (!*arg || strlen(arg) > 48))
        return disco_error_set(DISCO_EINVAL, "ofi: bad provider name \"%s\"", arg);
    int lrc = ofi_lib_load();
    if (lrc)
        return lrc;
    struct fi_info *info = choose(host, arg);
    if (!info)
        return disco_error_code(disco_last_error());
    ofi_transport *tp = calloc(1, sizeof(*tp));
    if (!tp) {
        fi_freeinfo(info);
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory");
    }
    tp->cb = *cb;
    tp->ctx = ctx;
    tp->info = info;
    tp->epfd = tp->evfd = tp->cqfd = tp->tfd = -1;
    pthread_mutex_init(&tp->lock, NULL);
    pthread_cond_init(&tp->cv, NULL);
    int rc = setup(tp);
    if (rc) {
        destroy(tp);
        return rc;
    }
    *out = (disco_transport *)(void *)tp;
    return 0;
}

int ofi_local_address(disco_transport *dtp, char *buf, size_t len)
{
    if (!dtp || !buf)
        return disco_error_set(DISCO_EINVAL, "ofi: local_address: bad arguments");
    ofi_transport *tp = ofi_tp(dtp);
    size_t need = strlen(tp->address) + 1;
    if (len < need)
        return disco_error_set(DISCO_EINVAL,
                               "ofi: local_address needs %zu bytes, got %zu", need, len);
    memcpy(buf, tp->address, need);
    return 0;
}

int ofi_connect(disco_transport *dtp, const char *address, void *ctx,
                disco_conn **out)
{
    if (!dtp || !out)
        return disco_error_set(DISCO_EINVAL, "ofi: connect: bad arguments");
    ofi_transport *tp = ofi_tp(dtp);
    uint8_t raw[OFI_ADDR_RAW_MAX];
    size_t rawlen;
    int rc = ofi_addr_parse(tp->prov, address, raw, &rawlen);
    if (rc)
        return rc;
    fi_addr_t addr;
    pthread_mutex_lock(&tp->lock);
    if ((rc = ofi_av_lookup_locked(tp, raw, rawlen, &addr)) != 0) {
        pthread_mutex_unlock(&tp->lock);
        return rc;
    }
    char peer[OFI_PEER_LEN];
    ofi_peer_name(tp, raw, rawlen, peer, sizeof(peer));
    ofi_conn *c = ofi_conn_new_locked(tp, OFI_CONNECTING, addr, peer, ctx);
    if (!c) {
        pthread_mutex_unlock(&tp->lock);
        return disco_error_set(DISCO_ENOMEM, "ofi: out of memory");
    }
    c->deadline = ofi_now() + tp->connect_timeout;
    uint8_t mylen = (uint8_t)tp->rawlen;
    const struct iovec hello[] = {{&c->id, sizeof(c->id)},
                                  {&mylen, 1},
                                  {tp->raw, tp->rawlen},
                                  {raw, rawlen}};
    if (ofi_conn_stage_ctl_locked(c, OFI_HELLO, 0, hello, 4) != 0)
        ofi_conn_fail_locked(c, DISCO_ENOMEM, "ofi: connect to %s: %s", peer,
                             disco_error_message(disco_last_error()));
    ofi_conn_push_locked(c);
    bool wake = (c->blocked || c->state == OFI_DEAD) && ofi_want_wake_locked(tp);
    pthread_mutex_unlock(&tp->lock);
    if (wake)
        ofi_wake(tp);
    *out = ofi_dc(c);
    return 0;
}

/* See ofi.h (fini). */
static void linger(ofi_transport *tp)
{
    double end = ofi_now() + OFI_LINGER_MS / 1000.0;
    const struct timespec pause = {0, 100000};
    pthread_mutex_lock(&tp->lock);
    tp->finishing = true;
    while (!ofi_drain_locked(tp) && ofi_now() < end) {
        pthread_mutex_unlock(&tp->lock);
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&tp->lock);
    }
    pthread_mutex_unlock(&tp->lock);
}

void ofi_fini(disco_transport *dtp)
{
    if (!dtp)
        return;
    ofi_transport *tp = ofi_tp(dtp);
    /* No progress runs any more: every connection is closed here, its sends
     * completed on this thread; on_close is not called. */
    for (;;) {
        pthread_mutex_lock(&tp->lock);
        ofi_conn *c = tp->conns;
        pthread_mutex_unlock(&tp->lock);
        if (!c)
            break;
        ofi_conn_shutdown(c, true);
    }
    linger(tp);
    destroy(tp);
}

/* Every libfabric call is made holding tp->lock: once we hold it, none
 * runs, and none starts before _exit. A call stuck longer than
 * OFI_LINGER_MS (spinning on a lock that a dead process left taken) is
 * left to die with us. */
static void ofi_quiesce(disco_transport *dtp)
{
    ofi_transport *tp = ofi_tp(dtp);
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += OFI_LINGER_MS / 1000;
    if (pthread_mutex_timedlock(&tp->lock, &end) != 0) /* never unlocked */
        return;
    /* Nobody is inside libfabric now, nor will be: closing the endpoint
     * removes what would outlive us (the shm provider's region, named in
     * /dev/shm after our pid, is unlinked by its close only). */
    close_fid(tp->ep ? &tp->ep->fid : NULL);
    tp->ep = NULL;
}

/* shm 1.17 names a process's region "<pid>:<endpoint>:<domain>" in
 * /dev/shm. */
static void ofi_process_ended(disco_transport *dtp, pid_t pid)
{
    if (strcmp(ofi_tp(dtp)->prov, "shm") != 0)
        return;
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    char prefix[24];
    int n = snprintf(prefix, sizeof(prefix), "%d:", (int)pid);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, (size_t)n) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* shm reaches the processes of this node only; RMA needs FI_RMA. */
static uint64_t ofi_caps_of(disco_transport *dtp)
{
    ofi_transport *tp = ofi_tp(dtp);
    uint64_t caps = DISCO_TRANSPORT_CAP_STREAM | DISCO_TRANSPORT_CAP_SAME_NODE;
    if (strcmp(tp->prov, "shm") != 0)
        caps |= DISCO_TRANSPORT_CAP_CROSS_NODE;
    if (tp->has_rma)
        caps |= DISCO_TRANSPORT_CAP_RMA;
    return caps;
}

const disco_transport_ops disco__ofi_ops = {
    .size = sizeof(disco_transport_ops),
    .name = "ofi",
    /* What the transport does with some provider; caps_of tells what an
     * instance does with its own (mem_register and rma_read fail with
     * DISCO_ENOSYS without FI_RMA). */
    .caps = DISCO_TRANSPORT_CAP_STREAM | DISCO_TRANSPORT_CAP_CROSS_NODE |
            DISCO_TRANSPORT_CAP_SAME_NODE | DISCO_TRANSPORT_CAP_RMA,
    .rank = 10, /* above tcp (0), below the native shm transport (20) */
    .eager_max = OFI_CHUNK,
    .init = ofi_init,
    .local_address = ofi_local_address,
    .connect = ofi_connect,
    .send = ofi_send_op,
    .progress = ofi_progress,
    .interrupt = ofi_interrupt,
    .wait_fd = ofi_wait_fd,
    .wait_arm = ofi_wait_arm,
    .conn_close = ofi_conn_close,
    .conn_peer = ofi_conn_peer,
    .conn_set_context = ofi_conn_set_context,
    .conn_context = ofi_conn_context,
    .fini = ofi_fini,
    .mem_register = ofi_mem_register,
    .mem_deregister = ofi_mem_deregister,
    .rma_read = ofi_rma_read,
    .caps_of = ofi_caps_of,
    .conn_abandon = ofi_conn_abandon,
    .quiesce = ofi_quiesce,
    .process_ended = ofi_process_ended,
};

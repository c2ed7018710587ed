/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Moving a peer's frames from the TCP bootstrap connection to the fastest
 * transport both processes have (shared memory on one node, a fabric across
 * nodes). It runs once per connection, right after the handshake and before
 * any other frame, so no frame can overtake another:
 *
 *   initiator -> acceptor, on TCP:  UPGRADE  [node, [[scheme, address]...]]
 *       every transport the initiator runs besides TCP, best first, and
 *       the boot it runs on (same-node transports need the same one).
 *   acceptor: connects to the first offer it can use (its own transport of
 *       that scheme; a same-node one only on the same boot). A connect that
 *       fails at once moves on to the next offer; TCP is the last resort.
 *       On the new connection it first sends the 36-byte proof
 *       "DUPG" | session, the secret both ends derived from the handshake
 *       (src/core/auth.h): only the authenticated peer knows it, and it
 *       never travels in clear. From then on it sends only there.
 *   acceptor -> initiator, on the path chosen: UPGRADED  scheme
 *   initiator: the proof on an accepted connection names the peer; it
 *       moves its own frames there. UPGRADED on TCP means: stay on TCP.
 *
 * Neither side sends anything else before the answer, so the only frames
 * on TCP after the handshake are UPGRADE and a TCP answer; the connection
 * then stays open, idle, to tell when the peer dies (a connectionless
 * fabric cannot). A link that breaks later is the peer's death, as a TCP
 * connection's would be.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "base/log.h"
#include "core/runtime.h"

#define HELLO_MAGIC "DUPG"
#define HELLO_SIZE (4 + DISCO__AUTH_MAC_SIZE)
_Static_assert(HELLO_SIZE == sizeof(((disco__link *)0)->hello), "hello buffer");

/* ---- initiator: the offer ------------------------------------------------ */

int disco__upgrade_offer(disco__peer *p)
{
    disco__xport_set *s = &disco__rt.xports;
    disco_value offers[DISCO__XPORTS_MAX], pair[DISCO__XPORTS_MAX][2];
    size_t n = 0;
    for (int i = 1; i < s->n; i++) {
        pair[n][0] = disco_str(s->x[i].scheme);
        pair[n][1] = disco_str(s->x[i].address);
        offers[n] = disco_list(pair[n], 2);
        n++;
    }
    disco_value fields[2] = {disco_str(disco__rt.node), disco_list(offers, n)};
    disco_value v = disco_list(fields, 2);
    pthread_mutex_lock(&disco__rt.lock);
    p->await_next = disco__rt.awaiting;
    disco__rt.awaiting = p;
    pthread_mutex_unlock(&disco__rt.lock);
    disco__frame_header h = {.kind = DISCO__FRAME_UPGRADE};
    return disco__send_frame(p, &h, &v);
}

void disco__upgrade_forget(disco__peer *p)
{
    pthread_mutex_lock(&disco__rt.lock);
    for (disco__peer **q = &disco__rt.awaiting; *q; q = &(*q)->await_next)
        if (*q == p) {
            *q = p->await_next;
            break;
        }
    pthread_mutex_unlock(&disco__rt.lock);
}

/* The peer awaiting an answer whose session secret is `session`, taken off
 * the list; NULL if none. */
static disco__peer *claim(const uint8_t *session)
{
    pthread_mutex_lock(&disco__rt.lock);
    disco__peer *found = NULL;
    for (disco__peer **q = &disco__rt.awaiting; *q; q = &(*q)->await_next) {
        const uint8_t *mine = disco__auth_session(&(*q)->auth);
        if (mine && !CRYPTO_memcmp(mine, session, DISCO__AUTH_MAC_SIZE)) {
            found = *q;
            *q = found->await_next;
            break;
        }
    }
    pthread_mutex_unlock(&disco__rt.lock);
    return found;
}

/* ---- acceptor: choosing -------------------------------------------------- */

static bool str_is(const disco_value *v, size_t max)
{
    return v->type == DISCO_STRING && v->str.len > 0 && v->str.len < max &&
           !memchr(v->str.ptr, '\0', v->str.len);
}

static void copy_str(char *dst, size_t cap, const disco_value *v)
{
    snprintf(dst, cap, "%.*s", (int)v->str.len, v->str.ptr);
}

/* Connects a link for p on x to address and queues the proof on it: 0,
 * or the connect's failure (nothing is left behind then). */
static int link_connect(disco__peer *p, disco__xport *x, const char *address)
{
    disco__link *l = calloc(1, sizeof(*l));
    uint8_t *hello = malloc(HELLO_SIZE); /* freed by on_sent */
    if (!l || !hello) {
        free(l);
        free(hello);
        return disco_error_set(DISCO_ENOMEM, "no memory for a link");
    }
    l->x = x;
    l->peer = p;
    int rc = x->ops->connect(x->tp, address, l, &l->conn);
    if (rc) {
        free(l);
        free(hello);
        return rc;
    }
    memcpy(hello, HELLO_MAGIC, 4);
    memcpy(hello + 4, disco__auth_session(&p->auth), DISCO__AUTH_MAC_SIZE);
    struct iovec iov = {hello, HELLO_SIZE};
    if ((rc = x->ops->send(l->conn, &iov, 1, hello))) {
        free(hello);
        x->ops->conn_close(l->conn);
        free(l);
        return rc;
    }
    pthread_rwlock_wrlock(&p->conn_lock);
    p->fast = l;
    atomic_store_explicit(&p->fast_x, l->x, memory_order_release);
    pthread_rwlock_unlock(&p->conn_lock);
    return 0;
}

/* Tries the offers in order; the scheme chosen ("tcp" when none). */
static const char *choose(disco__peer *p, const disco_value *node, const disco_value *offers)
{
    char peer_node[sizeof(disco__rt.node)];
    copy_str(peer_node, sizeof(peer_node), node);
    bool same_node = !strcmp(peer_node, disco__rt.node);
    for (size_t i = 0; i < offers->list.n; i++) {
        const disco_value *o = offers->list.items[i].list.items;
        char scheme[DISCO__XPORT_SCHEME_MAX], address[DISCO_TRANSPORT_ADDR_MAX];
        copy_str(scheme, sizeof(scheme), &o[0]);
        copy_str(address, sizeof(address), &o[1]);
        disco__xport *x = disco__xport_find(&disco__rt.xports, scheme);
        if (!x || x->index == 0)
            continue;
        if (!same_node && !(x->caps & DISCO_TRANSPORT_CAP_CROSS_NODE))
            continue;
        if (link_connect(p, x, address) == 0)
            return x->scheme;
        char msg[256] = "";
        if (disco_last_error())
            disco_error_format(disco_last_error(), msg, sizeof(msg));
        fprintf(stderr, "disco[%d]: cannot reach process %d over %s, trying the next "
                        "transport: %s\n", disco__rt.myid, p->pid, scheme, msg);
    }
    return "tcp";
}

/* The UPGRADE payload, checked: [node, [[scheme, address]...]]. */
static int decode_offer(const uint8_t *payload, size_t len, disco_value *v)
{
    size_t used;
    int rc = disco__value_decode(payload, len, &used, v);
    if (rc)
        return rc;
    const disco_value *f = v->list.items;
    bool ok = used == len && v->type == DISCO_LIST && v->list.n == 2 &&
              str_is(&f[0], sizeof(disco__rt.node)) && f[1].type == DISCO_LIST;
    for (size_t i = 0; ok && i < f[1].list.n; i++) {
        const disco_value *o = &f[1].list.items[i];
        ok = o->type == DISCO_LIST && o->list.n == 2 &&
             str_is(&o->list.items[0], DISCO__XPORT_SCHEME_MAX) &&
             str_is(&o->list.items[1], DISCO_TRANSPORT_ADDR_MAX);
    }
    if (!ok) {
        disco_value_free(v);
        return disco_error_set(DISCO_EPROTO, "malformed UPGRADE frame");
    }
    return 0;
}

int disco__upgrade_on_offer(disco__peer *p, const uint8_t *payload, size_t len)
{
    disco_value v;
    int rc = decode_offer(payload, len, &v);
    if (rc)
        return rc;
    const char *scheme = choose(p, &v.list.items[0], &v.list.items[1]);
    disco_value_free(&v);
    disco__debug("process %d (%s) talks to us over %s", disco__auth_peer(&p->auth)->pid,
                 p->host, scheme);
    p->upgraded = true;
    disco__frame_header h = {.kind = DISCO__FRAME_UPGRADED};
    disco_value answer = disco_str(scheme);
    return disco__send_frame(p, &h, &answer); /* on the path chosen */
}

/* ---- initiator: the answer ----------------------------------------------- */

int disco__upgrade_on_answer(disco__peer *p, const uint8_t *payload, size_t len)
{
    disco_value v;
    size_t used;
    int rc = disco__value_decode(payload, len, &used, &v);
    if (rc)
        return rc;
    bool ok = used == len && str_is(&v, DISCO__XPORT_SCHEME_MAX);
    char scheme[DISCO__XPORT_SCHEME_MAX] = "";
    if (ok)
        copy_str(scheme, sizeof(scheme), &v);
    disco_value_free(&v);
    pthread_rwlock_rdlock(&p->conn_lock);
    const char *have = p->fast ? p->fast->x->scheme : "tcp";
    ok = ok && !strcmp(scheme, have);
    pthread_rwlock_unlock(&p->conn_lock);
    if (!ok)
        return disco_error_set(DISCO_EPROTO, "UPGRADED names %s, but the frames came over %s",
                               scheme[0] ? scheme : "nothing valid", have);
    disco__upgrade_forget(p); /* staying on TCP: no link is coming */
    disco__debug("we talk to process %d (%s) over %s", p->pid, p->host, scheme);
    p->upgraded = true;
    return 0;
}

/* ---- links ----------------------------------------------------------------- */

void disco__link_on_accept(disco__xport *x, disco_conn *c)
{
    disco__link *l = calloc(1, sizeof(*l));
    if (!l) {
        x->ops->conn_close(c);
        return;
    }
    l->x = x;
    l->conn = c;
    x->ops->conn_set_context(c, l);
}

/* An accepted link that is no one's: closed and freed. */
static void link_discard(disco__link *l, const char *why)
{
    fprintf(stderr, "disco[%d]: %s connection from %s refused: %s\n", disco__rt.myid,
            l->x->scheme, l->x->ops->conn_peer(l->conn), why);
    l->x->ops->conn_close(l->conn);
    free(l);
}

/* Reads the proof at the start of an accepted link; the peer once it is
 * complete and valid (the link is then its data path). */
static disco__peer *take_hello(disco__link *l, const uint8_t **data, size_t *len)
{
    size_t n = HELLO_SIZE - l->hello_have;
    if (n > *len)
        n = *len;
    memcpy(l->hello + l->hello_have, *data, n);
    l->hello_have += n;
    *data += n;
    *len -= n;
    if (l->hello_have < HELLO_SIZE)
        return NULL;
    disco__peer *p = memcmp(l->hello, HELLO_MAGIC, 4) ? NULL : claim(l->hello + 4);
    if (!p) {
        link_discard(l, "it does not answer an upgrade of ours");
        return NULL;
    }
    l->peer = p;
    pthread_rwlock_wrlock(&p->conn_lock);
    p->fast = l;
    atomic_store_explicit(&p->fast_x, l->x, memory_order_release);
    pthread_rwlock_unlock(&p->conn_lock);
    return p;
}

void disco__link_on_recv(disco__link *l, const uint8_t *data, size_t len)
{
    disco__peer *p = l->peer;
    if (!p && !(p = take_hello(l, &data, &len)))
        return;
    if (len == 0 || atomic_load_explicit(&p->state, memory_order_acquire) == PEER_GONE)
        return;
    if (disco__take_frames(p, data, len) != 0) {
        disco__log_conn_error(p, "dropped");
        disco__peer_gone(p, disco_error_code(disco_last_error()), "corrupt stream");
    }
}

void disco__link_on_close(disco__link *l, int status)
{
    if (!l->peer) {
        link_discard(l, "closed before it said whose it is");
        return;
    }
    disco__peer_gone(l->peer, status ? status : DISCO_ECLOSED,
                     status ? disco_strerror(status) : "connection closed");
}

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Worker-to-worker connections: Julia's all_to_all topology.
 *
 * The master's JOIN tells a new worker its pid, the topology and the
 * workers that joined before it (pid, address, host). JOINs go out one at a
 * time from the progress thread, so of any two workers exactly one knows the
 * other's address, and that one (the later) is the one that dials: Julia's
 * "higher pid connects to lower", without depending on the order of pids
 * within a parallel addprocs.
 *
 * Eager clusters dial every listed worker before answering JOIN_COMPLETE, so
 * addprocs returns with the full mesh. Lazy ones (the default) connect on
 * first use: a worker that knows the other's address dials it; one that does
 * not asks the master, which asks the other to dial (Julia does the same).
 * A peer is published in the table before its connection starts, so two
 * tasks never dial the same process twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "cluster/worker_boot.h"
#include "core/runtime.h"

void disco__mesh_learn(int pid, const char *addr, const char *host)
{
    if (pid <= 0 || pid >= DISCO__MAX_PROCS || atomic_load(&disco__rt.known[pid]))
        return;
    disco__known *k = calloc(1, sizeof(*k));
    if (!k)
        return; /* a later call to pid goes through the master instead */
    snprintf(k->addr, sizeof(k->addr), "%s", addr);
    snprintf(k->host, sizeof(k->host), "%s", host);
    disco__known *none = NULL;
    if (!atomic_compare_exchange_strong(&disco__rt.known[pid], &none, k))
        free(k);
}

/* ---- master: JOIN --------------------------------------------------------- */

int disco__mesh_send_join(disco__peer *p)
{
    size_t n = 0;
    for (int pid = 2; pid < DISCO__MAX_PROCS; pid++) {
        disco__peer *q = atomic_load(&disco__rt.peers[pid]);
        n += q && q->joined && atomic_load(&q->state) != PEER_GONE;
    }
    disco_value *cells = calloc(n ? 4 * n : 1, sizeof(*cells));
    if (!cells)
        return disco_error_set(DISCO_ENOMEM, "no memory for a JOIN");
    disco_value *entries = cells + 3 * n;
    size_t k = 0;
    for (int pid = 2; pid < DISCO__MAX_PROCS && k < n; pid++) {
        disco__peer *q = atomic_load(&disco__rt.peers[pid]);
        if (!q || !q->joined || atomic_load(&q->state) == PEER_GONE)
            continue;
        disco_value *e = cells + 3 * k;
        e[0] = disco_i64(pid);
        e[1] = disco_str(q->addr);
        e[2] = disco_str(q->host);
        entries[k++] = disco_list(e, 3);
    }
    disco_value fields[4] = {disco_i64(p->pid), disco_i64(disco__rt.topology),
                             disco_bool(disco__rt.eager), disco_list(entries, k)};
    disco_value join = disco_list(fields, 4);
    disco__frame_header h = {.kind = DISCO__FRAME_JOIN};
    int rc = disco__send_frame(p, &h, &join);
    free(cells);
    if (rc == 0)
        p->joined = true;
    return rc;
}

void disco__mesh_on_join_complete(disco__peer *p, const disco_value *v)
{
    if (!p->joined || atomic_load(&p->state) != PEER_AUTH ||
        disco_event_isset(&p->settled))
        return;
    if (v->type == DISCO_NIL) {
        disco__peer_set_ready(p);
        return;
    }
    p->join_err = v->type == DISCO_ERROR && v->error
                      ? disco_error_copy(v->error)
                      : disco_error_new(DISCO_EPROTO, "malformed JOIN_COMPLETE");
    atomic_store(&p->ready_status, p->join_err ? disco_error_code(p->join_err) : DISCO_ENOMEM);
    disco_event_notify(&p->settled);
}

/* ---- worker: connecting to other workers --------------------------------- */

/* Publishes a new peer for pid, then dials it: only the task that
 * publishes dials, so concurrent first calls make one connection. */
static int dial(int pid, const char *addr)
{
    disco__peer *p = disco__peer_new(pid), *none = NULL;
    if (!p)
        return disco_error_set(DISCO_ENOMEM, "no memory for process %d", pid);
    if (!atomic_compare_exchange_strong(&disco__rt.peers[pid], &none, p)) {
        disco__peer_free_unpublished(p);
        return 0; /* someone else is connecting */
    }
    int rc = disco__peer_dial(p, addr);
    if (rc)
        disco__peer_gone(p, rc, "cannot connect");
    return rc;
}

static int mesh_link(const disco_value *args, size_t n, disco_value *result);
static int mesh_dial(const disco_value *args, size_t n, disco_value *result);

/* Gets a connection to pid under way (or finds one). */
static int link_start(int pid)
{
    if (atomic_load(&disco__rt.peers[pid]))
        return 0;
    disco__known *k = atomic_load(&disco__rt.known[pid]);
    if (k)
        return dial(pid, k->addr);
    /* pid joined after us, so it knows where we listen: have it dial us. */
    disco_value args[2] = {disco_i64(disco__rt.myid), disco_i64(pid)};
    return disco_remotecall_fetch(mesh_link, 1, args, 2, NULL);
}

static bool link_settled(void *arg)
{
    disco__peer *p = atomic_load(&disco__rt.peers[(int)(intptr_t)arg]);
    return p && disco_event_isset(&p->settled);
}

/* Waits until the connection to pid is ready or failed. It may be dialled
 * by the other side, so there is no event to wait on before it exists:
 * poll (only the first call to a process waits here, for a connection and
 * a handshake that take about a millisecond anyway). */
static int link_wait(int pid)
{
    double timeout = disco__worker_timeout();
    if (disco_timedwait(link_settled, (void *)(intptr_t)pid, timeout, 0.0002) != 0)
        return disco_error_set(DISCO_ETIMEDOUT,
                               "process %d: no connection to process %d within %g s",
                               disco__rt.myid, pid, timeout);
    return disco__peer_ready(pid) ? 0 : disco_error_code(disco_last_error());
}

disco__peer *disco__peer_get(int pid)
{
    disco__peer *p = pid > 0 && pid < DISCO__MAX_PROCS
                         ? atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire)
                         : NULL;
    if (p && atomic_load_explicit(&p->state, memory_order_acquire) == PEER_READY)
        return p;
    if (!disco__rt.worker || pid <= 1 || pid >= DISCO__MAX_PROCS || pid == disco__rt.myid ||
        (p && atomic_load(&p->state) == PEER_GONE))
        return disco__peer_ready(pid);
    if (disco__rt.topology == DISCO_TOPOLOGY_MASTER_WORKER) {
        disco_error_set(DISCO_ENOPROC,
                        "process %d cannot reach process %d: the cluster uses the "
                        "master_worker topology (workers talk to the master only)",
                        disco__rt.myid, pid);
        return NULL;
    }
    if (link_start(pid) != 0 || link_wait(pid) != 0)
        return NULL;
    return disco__peer_ready(pid);
}

/* Master, on behalf of worker args[0]: has worker args[1] dial it. */
static int mesh_link(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 2 || args[0].type != DISCO_I64 || args[1].type != DISCO_I64 ||
        args[0].i <= 1 || args[0].i >= DISCO__MAX_PROCS)
        return disco_throw(DISCO_EPROTO, "disco.mesh_link: bad arguments");
    disco__peer *from = disco__peer_ready((int)args[0].i);
    if (!from)
        return disco_error_code(disco_last_error());
    disco_value dargs[3] = {args[0], disco_str(from->addr), disco_str(from->host)};
    return disco_remotecall_fetch(mesh_dial, (int)args[1].i, dargs, 3, NULL);
}

/* Worker: dials process args[0] at address args[1] (host args[2]). */
static int mesh_dial(const disco_value *args, size_t n, disco_value *result)
{
    (void)result;
    if (n != 3 || args[0].type != DISCO_I64 || args[1].type != DISCO_STRING ||
        args[2].type != DISCO_STRING || args[0].i <= 1 || args[0].i >= DISCO__MAX_PROCS)
        return disco_throw(DISCO_EPROTO, "disco.mesh_dial: bad arguments");
    int pid = (int)args[0].i;
    char addr[DISCO__IDENTITY_ADDR_MAX + 1], host[DISCO__IDENTITY_HOST_MAX + 1];
    snprintf(addr, sizeof(addr), "%.*s", (int)args[1].str.len, args[1].str.ptr);
    snprintf(host, sizeof(host), "%.*s", (int)args[2].str.len, args[2].str.ptr);
    disco__mesh_learn(pid, addr, host);
    return link_start(pid);
}

/* Names outside C's identifiers: they cannot clash with user functions. */
__attribute__((constructor)) static void register_mesh_functions(void)
{
    disco_register("disco.mesh_link", mesh_link);
    disco_register("disco.mesh_dial", mesh_dial);
}

/* ---- worker: JOIN --------------------------------------------------------- */

static void send_join_complete(int rc)
{
    disco__peer *master = atomic_load(&disco__rt.peers[1]);
    disco_error *e = rc ? disco_error_take() : NULL;
    if (rc && !e)
        e = disco_error_new(rc, "%s", disco_strerror(rc));
    if (e)
        disco__error_set_pid(e, disco__rt.myid);
    disco_value v = e ? disco_error_value(e) : disco_nil();
    disco__frame_header h = {.kind = DISCO__FRAME_JOIN_COMPLETE};
    if (master)
        disco__send_frame(master, &h, &v);
    disco_error_free(e);
}

/* Eager join: connects to every worker listed (pids[0] is the count). */
static int connect_all(void *arg, void **unused)
{
    (void)unused;
    int *pids = arg, rc = 0;
    for (int i = 1; i <= pids[0] && !rc; i++)
        rc = link_start(pids[i]);
    for (int i = 1; i <= pids[0] && !rc; i++)
        rc = link_wait(pids[i]);
    free(pids);
    send_join_complete(rc);
    return 0;
}

static bool valid_entry(const disco_value *e)
{
    return e->type == DISCO_LIST && e->list.n == 3 && e->list.items[0].type == DISCO_I64 &&
           e->list.items[0].i > 1 && e->list.items[0].i < DISCO__MAX_PROCS &&
           e->list.items[1].type == DISCO_STRING &&
           e->list.items[1].str.len <= DISCO__IDENTITY_ADDR_MAX &&
           e->list.items[2].type == DISCO_STRING &&
           e->list.items[2].str.len <= DISCO__IDENTITY_HOST_MAX;
}

int disco__mesh_on_join(const disco_value *v)
{
    const disco_value *f = v->list.items;
    if (v->type != DISCO_LIST || v->list.n != 4 || f[0].type != DISCO_I64 ||
        f[0].i <= 1 || f[0].i >= DISCO__MAX_PROCS || f[1].type != DISCO_I64 ||
        (f[1].i != DISCO_TOPOLOGY_ALL_TO_ALL && f[1].i != DISCO_TOPOLOGY_MASTER_WORKER) ||
        f[2].type != DISCO_BOOL || f[3].type != DISCO_LIST || disco__rt.myid != 0)
        return disco_error_set(DISCO_EPROTO, "malformed or repeated JOIN");
    const disco_value *list = f[3].list.items;
    size_t n = f[3].list.n;
    for (size_t i = 0; i < n; i++)
        if (!valid_entry(&list[i]))
            return disco_error_set(DISCO_EPROTO, "malformed JOIN entry");
    disco__rt.myid = (int)f[0].i;
    disco__rt.self.pid = disco__rt.myid;
    disco__rt.topology = (int)f[1].i;
    disco__rt.eager = f[2].b;
    for (size_t i = 0; i < n; i++) {
        const disco_value *e = list[i].list.items;
        char addr[DISCO__IDENTITY_ADDR_MAX + 1], host[DISCO__IDENTITY_HOST_MAX + 1];
        snprintf(addr, sizeof(addr), "%.*s", (int)e[1].str.len, e[1].str.ptr);
        snprintf(host, sizeof(host), "%.*s", (int)e[2].str.len, e[2].str.ptr);
        disco__mesh_learn((int)e[0].i, addr, host);
    }
    if (!disco__rt.eager || disco__rt.topology != DISCO_TOPOLOGY_ALL_TO_ALL || n == 0) {
        send_join_complete(0);
        return 0;
    }
    /* Dialling and waiting block: a task does it, not the progress thread. */
    int *pids = malloc((n + 1) * sizeof(*pids));
    if (!pids)
        return disco_error_set(DISCO_ENOMEM, "no memory for the join");
    pids[0] = (int)n;
    for (size_t i = 0; i < n; i++)
        pids[i + 1] = (int)list[i].list.items[0].i;
    disco_task_attr attr = {.detached = true, .name = "eager join"};
    if (!disco_async_attr(connect_all, pids, &attr)) {
        free(pids);
        return disco_error_code(disco_last_error());
    }
    return 0;
}

/* ---- worker: accepting another worker ------------------------------------- */

int disco__mesh_accept(disco__peer *p, const disco__identity *id)
{
    int pid = id->pid;
    if (disco__rt.topology == DISCO_TOPOLOGY_MASTER_WORKER)
        return disco_error_set(DISCO_EPERM, "connection from process %d refused: the "
                                            "cluster uses the master_worker topology", pid);
    if (pid <= 1 || pid >= DISCO__MAX_PROCS || pid == disco__rt.myid)
        return disco_error_set(DISCO_EPERM, "unexpected connection from process %d (%s)",
                               pid, id->host);
    disco__peer *none = NULL;
    p->pid = pid;
    if (!atomic_compare_exchange_strong(&disco__rt.peers[pid], &none, p)) {
        p->pid = 0; /* not published: freed when dropped */
        return disco_error_set(DISCO_EPERM, "second connection from process %d refused", pid);
    }
    disco__mesh_learn(pid, id->addr, id->host);
    disco__peer_set_ready(p);
    /* The dialer counts the connection as ready only from this: so when
     * its eager join completes, both ends are ready. */
    disco__frame_header h = {.kind = DISCO__FRAME_IDENTIFY_ACK};
    return disco__send_frame(p, &h, NULL);
}

/* SPDX-License-Identifier: BSD-3-Clause */
/* disco_addprocs / disco_rmprocs with local workers (Julia's LocalManager). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/joined.h"
#include "cluster/launch.h"
#include "core/runtime.h"

int (*disco__workers_joined)(const int *pids, int n);

static bool settled(void *arg)
{
    disco__peer *p = arg;
    return disco_event_isset(&p->settled);
}

/* Everything needed for one new worker while addprocs runs. */
typedef struct {
    int pid;
    disco__launched *proc;
    disco__peer *peer;
    int status;
    disco_error *err;
} newcomer;

static void fail(newcomer *w)
{
    if (!w->status) {
        w->status = disco_error_code(disco_last_error());
        w->err = disco_error_take();
    }
}

/* Connects to a launched worker at addr; the handshake starts. */
static int connect_worker(newcomer *w, const char *addr)
{
    disco__peer *p = disco__peer_new(w->pid);
    if (!p)
        return disco_error_set(DISCO_ENOMEM, "no memory for worker %d", w->pid);
    p->proc = w->proc;
    p->os_pid = disco__launched_os_pid(w->proc);
    int rc = disco__peer_dial(p, addr);
    if (rc) {
        disco__peer_free_unpublished(p);
        return rc;
    }
    w->peer = p;
    atomic_store_explicit(&disco__rt.peers[w->pid], p, memory_order_release);
    return 0;
}

/* The first addprocs chooses the cluster's topology; later ones must
 * agree, since the workers already there follow it (as in Julia). */
static int set_topology(const disco_addprocs_opts *opts)
{
    pthread_mutex_lock(&disco__rt.lock);
    int rc = 0;
    if (!disco__rt.topology_set) {
        disco__rt.topology = opts->topology;
        disco__rt.eager = opts->eager;
        disco__rt.topology_set = true;
    } else if (disco__rt.topology != opts->topology || disco__rt.eager != opts->eager) {
        rc = disco_error_set(DISCO_EINVAL, "disco_addprocs: the cluster's topology is %s%s; "
                             "workers cannot be added with another",
                             disco__rt.topology == DISCO_TOPOLOGY_MASTER_WORKER
                                 ? "master_worker" : "all_to_all",
                             disco__rt.topology == DISCO_TOPOLOGY_MASTER_WORKER ? ""
                             : disco__rt.eager ? " (eager)" : " (lazy)");
    }
    pthread_mutex_unlock(&disco__rt.lock);
    return rc;
}

static void worker_ended(pid_t os_pid)
{
    disco__xports_process_ended(&disco__rt.xports, os_pid);
}

int disco_addprocs(int n, const disco_addprocs_opts *opts, int *pids)
{
    disco_addprocs_opts none = {0};
    if (!opts)
        opts = &none;
    if (disco__rt.worker)
        return disco_error_set(DISCO_EPERM, "only process 1 may add processes (this is %d)",
                               disco__rt.myid);
    if (n == DISCO_AUTO)
        n = (int)disco_sched_nthreads();
    if (n < 0 || n > DISCO__MAX_PROCS / 2)
        return disco_error_set(DISCO_EINVAL, "disco_addprocs: bad count %d", n);
    if (opts->topology != DISCO_TOPOLOGY_ALL_TO_ALL &&
        opts->topology != DISCO_TOPOLOGY_MASTER_WORKER)
        return disco_error_set(DISCO_EINVAL, "disco_addprocs: unknown topology %d",
                               opts->topology);
    int rc = disco__runtime_start();
    if (rc || n == 0)
        return rc ? rc : 0;
    if ((rc = set_topology(opts)))
        return rc;
    newcomer *ws = calloc((size_t)n, sizeof(*ws));
    char threads[32];
    snprintf(threads, sizeof(threads), "DISCO_THREADS=%d", opts->threads > 0 ? opts->threads : 1);
    size_t nenv = 0;
    while (opts->env && opts->env[nenv])
        nenv++;
    char **env = calloc(nenv + 3, sizeof(*env));
    if (!ws || !env) {
        free(ws);
        free(env);
        return disco_error_set(DISCO_ENOMEM, "disco_addprocs: out of memory");
    }
    /* Many workers share a node: binding each one's threads from core 0 on
     * would stack them all on the first cores. The caller's entries come
     * after these and win. */
    env[0] = threads;
    env[1] = (char *)"DISCO_BIND=0";
    memcpy(env + 2, opts->env ? opts->env : env + 2, nenv * sizeof(*env));
    pthread_mutex_lock(&disco__rt.lock);
    if (disco__rt.next_pid + n >= DISCO__MAX_PROCS) {
        pthread_mutex_unlock(&disco__rt.lock);
        free(ws);
        free(env);
        return disco_error_set(DISCO_EINVAL, "disco_addprocs: more than %d processes",
                               DISCO__MAX_PROCS);
    }
    for (int i = 0; i < n; i++)
        ws[i].pid = disco__rt.next_pid++;
    pthread_mutex_unlock(&disco__rt.lock);

    /* What a killed worker leaves behind goes when it is reaped. */
    disco__launched_set_exit_hook(worker_ended);
    /* Launch all, then wait for all: they start in parallel. */
    for (int i = 0; i < n; i++) {
        disco__launch_opts lo = {
            .exename = opts->exename, .exeflags = opts->exeflags, .dir = opts->dir,
            .env = env, .timeout = opts->timeout, .pid_label = ws[i].pid,
        };
        if (disco__launch_start(&lo, &ws[i].proc) != 0)
            fail(&ws[i]);
    }
    for (int i = 0; i < n; i++) {
        char addr[DISCO__LAUNCH_ADDR_MAX];
        if (!ws[i].status && (disco__launch_wait_address(ws[i].proc, addr, sizeof(addr)) ||
                              connect_worker(&ws[i], addr)))
            fail(&ws[i]);
    }
    double timeout = opts->timeout > 0 ? opts->timeout : 60;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        newcomer *w = &ws[i];
        int st;
        if (!w->status && disco_timedwait(settled, w->peer, timeout, 0.001) != 0) {
            fail(w);
        } else if (!w->status && (st = atomic_load(&w->peer->ready_status))) {
            char why[512] = "";
            if (w->peer->join_err)
                disco_error_format(w->peer->join_err, why, sizeof(why));
            disco_error_set(st, "worker %d failed to join (%s)", w->pid,
                            why[0] ? why : disco_strerror(st));
            fail(w);
        }
        failed += w->status != 0;
    }
    if (failed) { /* all or nothing: remove the ones that did join */
        int first = -1;
        for (int i = 0; i < n; i++) {
            if (!ws[i].status)
                disco_rmprocs(&ws[i].pid, 1, 5);
            else if (ws[i].proc && !ws[i].peer) {
                disco__launched_kill(ws[i].proc, SIGKILL);
                disco__launched_reap(ws[i].proc, 5, NULL);
            } else if (ws[i].peer) {
                disco_rmprocs(&ws[i].pid, 1, 5);
            }
            if (ws[i].status && first < 0)
                first = i;
        }
        char msg[512] = "";
        if (ws[first].err)
            disco_error_format(ws[first].err, msg, sizeof(msg));
        rc = disco_error_set(ws[first].status, "disco_addprocs: %d of %d workers failed; "
                             "worker %d: %s", failed, n, ws[first].pid, msg);
    } else {
        int *got = malloc((size_t)n * sizeof(*got));
        for (int i = 0; got && i < n; i++)
            got[i] = ws[i].pid;
        rc = !got ? disco_error_set(DISCO_ENOMEM, "disco_addprocs: out of memory")
             : disco__workers_joined ? disco__workers_joined(got, n) : 0;
        for (int i = 0; rc && i < n; i++) /* all or nothing, as above */
            disco_rmprocs(&ws[i].pid, 1, 5);
        for (int i = 0; !rc && i < n; i++)
            if (pids)
                pids[i] = got[i];
        free(got);
        rc = rc ? rc : n;
    }
    for (int i = 0; i < n; i++) {
        disco_error_free(ws[i].err);
        if (ws[i].proc && !ws[i].peer)
            disco__launched_free(ws[i].proc);
    }
    free(ws);
    free(env);
    return rc;
}

static bool gone(void *arg)
{
    disco__peer *p = arg;
    return atomic_load_explicit(&p->departed, memory_order_acquire);
}

int disco_rmprocs(const int *pids, int n, double timeout)
{
    if (disco__rt.worker)
        return disco_error_set(DISCO_EPERM, "only process 1 may remove processes");
    int rc = 0;
    for (int i = 0; i < n; i++) { /* ask everyone first, then wait */
        disco__peer *p = pids[i] > 1 && pids[i] < DISCO__MAX_PROCS
                             ? atomic_load(&disco__rt.peers[pids[i]]) : NULL;
        if (!p) {
            rc = disco_error_set(DISCO_ENOPROC, "disco_rmprocs: %d is not a worker", pids[i]);
            continue;
        }
        disco__frame_header h = {.kind = DISCO__FRAME_SHUTDOWN};
        if (!gone(p))
            disco__send_frame(p, &h, NULL);
    }
    for (int i = 0; i < n; i++) {
        disco__peer *p = pids[i] > 1 && pids[i] < DISCO__MAX_PROCS
                             ? atomic_load(&disco__rt.peers[pids[i]]) : NULL;
        if (!p)
            continue;
        if (disco_timedwait(gone, p, timeout, 0.001) != 0 && p->proc) {
            disco__launched_kill(p->proc, SIGKILL); /* it ignored the request */
            rc = disco_error_set(DISCO_ETIMEDOUT, "worker %d did not exit within %g s: killed",
                                 p->pid, timeout);
        }
        if (p->proc) {
            disco__launched_reap(p->proc, timeout > 1 ? timeout : 1, NULL);
            disco__launched_free(p->proc);
            p->proc = NULL;
            /* Dead and reaped, its connection ends at once: once that is
             * seen, the worker has left disco_workers(). */
            disco_timedwait(gone, p, 10, 0.001);
        }
    }
    return rc;
}

typedef struct removal {
    int n;
    double timeout;
    int pids[];
} removal;

static int remove_in_task(void *arg, void **unused)
{
    (void)unused;
    removal *r = arg;
    int rc = disco_rmprocs(r->pids, r->n, r->timeout);
    free(r);
    return rc;
}

disco_task *disco_rmprocs_async(const int *pids, int n, double timeout)
{
    if (disco__rt.worker) {
        disco_error_set(DISCO_EPERM, "only process 1 may remove processes");
        return NULL;
    }
    if (n < 0 || (n && !pids)) {
        disco_error_set(DISCO_EINVAL, "disco_rmprocs_async: bad pid list");
        return NULL;
    }
    removal *r = malloc(sizeof(*r) + (size_t)n * sizeof(int));
    if (!r) {
        disco_error_set(DISCO_ENOMEM, "disco_rmprocs_async: out of memory");
        return NULL;
    }
    r->n = n;
    r->timeout = timeout;
    memcpy(r->pids, pids, (size_t)n * sizeof(int));
    disco_task_attr attr = {.name = "rmprocs"};
    disco_task *t = disco_async_attr(remove_in_task, r, &attr);
    if (!t)
        free(r);
    return t;
}

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The cluster: the set of processes that trust each other.
 *
 * Process 1, the master, starts the program; disco_addprocs launches
 * workers (pids 2, 3, ..., never reused), which run the same program image:
 * disco_init turns such a process into a worker that serves calls and never
 * returns. The cluster cookie is the shared secret that every process of
 * one cluster knows and that each connection proves before anything else is
 * exchanged (Julia's `cluster_cookie()`).
 *
 * Unlike Julia, disco never sends the cookie over the wire: peers prove they
 * know it with a challenge-response (HMAC-SHA256 over fresh random nonces),
 * so an eavesdropper learns neither the cookie nor anything it could replay.
 * The cookie is also never put in a worker's argv or environment, where `ps`
 * or /proc would show it to other users: workers receive it on their stdin.
 *
 * A peer that records one handshake can still try to guess the cookie
 * offline; the default cookie (256 random bits) makes that hopeless, so a
 * cookie set by hand should be just as unguessable.
 */
#ifndef DISCO_CLUSTER_H
#define DISCO_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "disco/status.h"
#include "disco/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest cookie accepted, in bytes (not counting the terminating NUL). */
#define DISCO_CLUSTER_COOKIE_MAX 256

/*
 * The calling process's cluster cookie. On first use, when none was set, it
 * is generated from the system's cryptographic random generator: 32 random
 * bytes written as 64 lowercase hex characters. Thread-safe.
 *
 * The returned string stays valid and unchanged for the life of the process;
 * after a later disco_cluster_cookie_set, calls return the new cookie (as a
 * different string). Returns NULL only when the random generator fails (the
 * last error then says so, DISCO_ESYS); a later call tries again.
 */
DISCO_API const char *disco_cluster_cookie(void);

/*
 * Sets the cluster cookie, as a worker does with the cookie read from its
 * stdin. The cookie must be 1 to DISCO_CLUSTER_COOKIE_MAX bytes of printable
 * ASCII (0x20 to 0x7e); anything else fails with DISCO_EINVAL and the cookie
 * is unchanged. The string is copied. Thread-safe. Returns 0 or DISCO_EINVAL
 * (DISCO_ENOMEM when out of memory).
 */
DISCO_API int disco_cluster_cookie_set(const char *cookie);

/*
 * Call first thing in main. In the master it only notes the arguments and
 * returns 0. In a process launched as a worker (argv holds the worker flag
 * that disco_addprocs adds), it reads the cookie from stdin, listens on
 * 127.0.0.1, reports its address to the master and serves calls until the
 * master removes it or goes away: then the process exits, and disco_init
 * never returns.
 */
DISCO_API int disco_init(int *argc, char ***argv);

/* Master: removes every worker (disco_rmprocs) and stops the runtime and
 * the scheduler. 0 or the first failure. */
DISCO_API int disco_finalize(void);

/* This process's pid: 1 in the master. */
DISCO_API int disco_myid(void);

/* Processes in the cluster as this process sees them, itself included
 * (Julia's nprocs/procs): the count, and the first max pids, ascending. */
DISCO_API int disco_nprocs(void);
DISCO_API int disco_procs(int *pids, int max);

/* The processes this process knows that run on the same host as pid
 * (itself included when it does; Julia's procs(pid)): the count, and the
 * first max of them ascending. DISCO_ENOPROC for an unknown pid. */
DISCO_API int disco_procs_on_node(int pid, int *pids, int max);

/* Workers: every process but 1 — or just 1 when it is alone, as in Julia
 * (nworkers() == 1, workers() == [1]). */
DISCO_API int disco_nworkers(void);
DISCO_API int disco_workers(int *pids, int max);

/* The processes this process has a live connection to, ascending: the
 * count, and the first max pids (an introspection call, to see the lazy or
 * full mesh). */
DISCO_API int disco_connections(int *pids, int max);

/* The transport this process's messages to pid travel over, as a name:
 * "tcp", "shm" (disco's shared-memory rings), "ofi+<provider>"
 * (libfabric), or "self" for this process. Chosen per peer when the two
 * connect: the best transport both run (DISCO_TRANSPORT selects which a
 * process runs; TCP is always one), and a same-node one only between
 * processes on the same machine. Writes the name into buf (len bytes with
 * the NUL); returns 0, DISCO_ENOPROC / DISCO_EPROCEXIT when pid is not a
 * connected process, DISCO_EINVAL for a NULL or too small buffer. Set
 * DISCO_DEBUG=1 to have every choice logged to stderr. */
DISCO_API int disco_transport_info(int pid, char *buf, size_t len);

/* n for disco_addprocs: one worker per core of this process's cpuset. */
#define DISCO_AUTO (-1)

/*
 * How workers connect (Julia's `topology`), chosen by the first
 * disco_addprocs for the life of the cluster:
 *
 * DISCO_TOPOLOGY_ALL_TO_ALL (the default): every process may call every
 *   other. Lazily (the default) a connection between two workers is made on
 *   first use, costing that first call about a millisecond; with `eager`
 *   every new worker connects to all the others before addprocs returns
 *   (n^2/2 connections: fine for tens of workers, costly for thousands).
 * DISCO_TOPOLOGY_MASTER_WORKER: workers talk to the master only; a call
 *   from one worker to another fails at once with DISCO_ENOPROC, and a
 *   connection from another worker is refused.
 */
enum { DISCO_TOPOLOGY_ALL_TO_ALL = 0, DISCO_TOPOLOGY_MASTER_WORKER = 1 };

/* Options of disco_addprocs (zero-initialise; all fields optional). */
typedef struct disco_addprocs_opts {
    const char *exename;   /* program (default: this program's image) */
    char *const *exeflags; /* argv after the program name, NULL-terminated */
    const char *dir;       /* working directory (default: ours) */
    char *const *env;      /* extra "NAME=value", NULL-terminated */
    int threads;           /* scheduler threads per worker (default 1; workers
                            * are not bound to cores: DISCO_BIND=0 unless env
                            * says otherwise) */
    double timeout;        /* s to launch and join (default DISCO_WORKER_TIMEOUT or 60) */
    int topology;          /* DISCO_TOPOLOGY_* (default all-to-all) */
    bool eager;            /* all-to-all: connect all workers at join (Julia's
                            * lazy=false) */
} disco_addprocs_opts;

/*
 * Master only: launches n local workers (Julia's addprocs with the
 * LocalManager) in parallel, each listening on 127.0.0.1, connects to each
 * and authenticates it. Stores the new pids in pids (room for n; may be
 * NULL) and returns n, or fails as a whole (the workers that did start are
 * removed again) with the last error naming what went wrong: a worker that
 * reported no address in time, exited early, or failed the handshake.
 */
DISCO_API int disco_addprocs(int n, const disco_addprocs_opts *opts, int *pids);

/*
 * Master only: asks workers to exit and waits up to timeout seconds for
 * each to be gone; a worker still there is then killed (SIGKILL), so
 * removal always completes. Returns 0, or DISCO_ETIMEDOUT when some had to
 * be killed, DISCO_ENOPROC for a pid that is not a worker.
 */
DISCO_API int disco_rmprocs(const int *pids, int n, double timeout);

/*
 * The same in the background (Julia's rmprocs with waitfor = 0): returns
 * at once with the task doing it, to join for its status (as above), or
 * NULL with the last error set.
 */
DISCO_API disco_task *disco_rmprocs_async(const int *pids, int n, double timeout);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_CLUSTER_H */

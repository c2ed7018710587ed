/* SPDX-License-Identifier: BSD-3-Clause */
/* disco_init (the worker's life) and disco_finalize. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/launch.h"
#include "cluster/worker_boot.h"
#include "core/runtime.h"

/* hwloc's plugins (hwloc 2, one shared object each) that a worker has no
 * use for. */
#define DISCO__WORKER_HWLOC_PLUGINS_UNUSED                                      \
    "hwloc_pci,hwloc_opencl,hwloc_cuda,hwloc_nvml,hwloc_rsmi,hwloc_levelzero,"  \
    "hwloc_gl,hwloc_xml_libxml"

/* Takes the worker flag out of argv; true if it was there. */
static bool take_worker_flag(int *argc, char ***argv)
{
    if (!argc || !argv || !*argv)
        return false;
    for (int i = 1; i < *argc; i++) {
        if (strcmp((*argv)[i], DISCO__WORKER_FLAG))
            continue;
        memmove(&(*argv)[i], &(*argv)[i + 1], (size_t)(*argc - i) * sizeof(char *));
        (*argc)--;
        return true;
    }
    return false;
}

static void die(const char *what)
{
    char msg[512] = "";
    if (disco_last_error())
        disco_error_format(disco_last_error(), msg, sizeof(msg));
    fprintf(stderr, "disco worker: %s: %s\n", what, msg);
    exit(1);
}

/* The process that started this worker: the master, for a local worker. */
static pid_t parent;

/* Whether process pid has ended (a zombie has: only its reaping is left). */
static bool ended(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    char path[32], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *name_end = strrchr(buf, ')'); /* the state follows the name */
    return name_end && name_end[1] == ' ' && name_end[2] == 'Z';
}

/* A local master killed hard leaves what only its transports' close would
 * have removed (libfabric's shm region in /dev/shm, named after its pid):
 * its workers remove it as they go, once the master has ended. Its fds
 * close before it ends (the kernel reparents its children last), so a
 * worker that lost it without a goodbye waits a little for that; then its
 * pid is free or a zombie's, and the region the master's. */
static void clean_after_master(void)
{
    if (parent <= 1 || atomic_load(&disco__rt.master_said_goodbye))
        return;
    for (int i = 0; i < 100 && (getppid() == parent || !ended(parent)); i++)
        usleep(10000);
    if (getppid() != parent && ended(parent))
        disco__xports_process_ended(&disco__rt.xports, parent);
}

/* The watchdog's exits (the master is gone, or never came) first settle
 * the transports, as the main thread's does below: no lock left taken in
 * memory shared with other processes, no libfabric shm region left in
 * /dev/shm (quiesce). Before the runtime is up there is nothing to settle. */
static void watchdog_fired(int reason, void *arg)
{
    (void)arg;
    if (atomic_load_explicit(&disco__rt.up, memory_order_acquire)) {
        clean_after_master();
        disco__xports_quiesce(&disco__rt.xports);
    }
    disco__worker_watchdog_exit(reason);
}

int disco_init(int *argc, char ***argv)
{
    if (!take_worker_flag(argc, argv))
        return 0; /* the master: everything starts on demand */
    disco__rt.worker = true;
    disco__rt.myid = 0; /* until the master's JOIN names us */
    parent = getppid();
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    if (disco__worker_read_cookie(cookie, sizeof(cookie)) != 0)
        die("reading the cookie");
    int rc = disco_cluster_cookie_set(cookie);
    memset(cookie, 0, sizeof(cookie));
    if (rc)
        die("bad cookie");
    if (disco__worker_watchdog_start(0, watchdog_fired, NULL) != 0)
        die("starting the watchdog");
    /* A worker needs hwloc's CPU topology only: its I/O, GPU and XML
     * plugins (and the C++ runtime some pull in) cost every idle worker
     * about 0.9 MB resident. Read at hwloc's first use, which is the
     * scheduler's start below; a value the user set wins. */
    setenv("HWLOC_PLUGINS_BLACKLIST", DISCO__WORKER_HWLOC_PLUGINS_UNUSED, 0);
    if (disco__runtime_start() != 0)
        die("starting the runtime");
    if (disco__worker_announce(disco__rt.address) != 0)
        die("reporting the address");
    /* Serve until the master says goodbye or goes away. */
    while (sem_wait(&disco__rt.master_gone) != 0)
        ; /* EINTR */
    fflush(stdout);
    fflush(stderr);
    clean_after_master();
    disco__xports_quiesce(&disco__rt.xports);
    _exit(0); /* calls in flight die with us, as in Julia */
}

int disco_finalize(void)
{
    if (disco__rt.worker)
        return disco_error_set(DISCO_EPERM, "disco_finalize is for the master");
    int pids[DISCO__MAX_PROCS];
    int n = 0, rc = 0;
    for (int pid = 2; pid < DISCO__MAX_PROCS; pid++) {
        disco__peer *p = atomic_load(&disco__rt.peers[pid]);
        if (p && p->proc)
            pids[n++] = pid;
    }
    if (n)
        rc = disco_rmprocs(pids, n, 10);
    if (atomic_load(&disco__rt.up)) {
        disco__sched_set_progress(NULL);
        disco__xports_fini(&disco__rt.xports);
        disco__rt.tp = NULL;
        for (int pid = 1; pid < DISCO__MAX_PROCS; pid++) {
            disco__peer *p = atomic_exchange(&disco__rt.peers[pid], NULL);
            if (p) {
                free(p->rbuf);
                free(p->fast); /* its connection went with its transport */
                pthread_rwlock_destroy(&p->conn_lock);
                free(p);
            }
        }
        atomic_store(&disco__rt.up, false);
    }
    int src = disco_sched_stop();
    return rc ? rc : src;
}

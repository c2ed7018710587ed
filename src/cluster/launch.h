/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Launching local worker processes (the master side of Julia's LocalManager).
 *
 * A worker is a program (by default the running one, /proc/self/exe) started
 * with a worker flag. Its stdin, stdout and stderr are pipes to the master:
 *
 *   - stdin carries the cookie as its one and only line, then stays open,
 *     never written again, for the worker's whole life: the worker sees EOF
 *     on stdin when the master dies, however it dies (SIGKILL included),
 *     since the kernel closes the master's end. The cookie is never put in
 *     argv or the environment, where `ps` and /proc show it to other users.
 *   - stdout brings the line "disco-worker-address: <address>" (see
 *     worker_boot.h) once the worker listens;
 *   - everything else the worker prints on stdout or stderr, before or after
 *     its address, is copied to the master's stderr one whole line at a time
 *     (one write(2) per line) as "From worker N: <line>".
 *
 * One forwarding thread per process serves the pipes of every launched
 * worker with epoll; it is started with the first launch and ends by itself
 * when no pipe is left to serve. Lines longer than 4 KiB are cut into pieces.
 *
 * A launch is asynchronous: disco__launch_start spawns the process and
 * returns at once, disco__launch_wait_address blocks until the worker has
 * reported its address, so that many workers start in parallel.
 *
 * Workers are started in a process group of their own (Julia's "detached"):
 * a Ctrl-C on the master's terminal does not reach them; they notice the
 * master's death through stdin instead. Their signal mask is empty and
 * every signal has its default action. No file descriptor of the master
 * other than the three pipes reaches a worker: every descriptor this layer
 * opens is close-on-exec, and the child closes descriptors 3 and up before
 * it runs the program (which also catches descriptors opened elsewhere
 * without O_CLOEXEC).
 *
 * Thread safety: different handles may be used from different threads at
 * once; one handle is used by one thread at a time. A process forked from
 * the master (without exec) must not use the master's handles.
 */
#ifndef DISCO_CLUSTER_LAUNCH_H
#define DISCO_CLUSTER_LAUNCH_H

#include <stddef.h>
#include <sys/types.h>

/* The argv flag that makes a disco program a worker, by default. */
#define DISCO__WORKER_FLAG "--disco-worker"

/* Longest address a worker may report, in bytes with the terminating NUL. */
#define DISCO__LAUNCH_ADDR_MAX 256

/* Lines a worker may print on stdout before its address. */
#define DISCO__LAUNCH_MAX_LINES 1000

/* How to start one worker. Strings are copied by disco__launch_start: none
 * needs to outlive the call. */
typedef struct disco__launch_opts {
    /* Program to run. NULL: the running program (/proc/self/exe). A name
     * without '/' is searched in PATH; a relative path with '/' is taken
     * relative to dir (the child changes directory first, as Julia's
     * `Cmd(...; dir)` does). */
    const char *exename;
    /* Arguments placed after the program name, NULL-terminated; NULL for
     * none. The child's argv is: exename, exeflags..., worker_flag. */
    char *const *exeflags;
    /* The flag that makes the program a worker, last in argv. NULL:
     * DISCO__WORKER_FLAG; "": none. */
    const char *worker_flag;
    /* Working directory of the child; NULL: the master's. */
    const char *dir;
    /* "NAME=value" entries added to the inherited environment (replacing an
     * inherited entry of the same name), NULL-terminated; NULL for none. */
    char *const *env;
    /* Written to the child's stdin, followed by a newline. NULL: the cluster
     * cookie (disco_cluster_cookie()). 1 to DISCO_CLUSTER_COOKIE_MAX bytes,
     * no newline. */
    const char *cookie;
    /* Seconds, counted from disco__launch_start, that the worker has to
     * report its address. <= 0: DISCO_WORKER_TIMEOUT from the environment,
     * 60 by default. */
    double timeout;
    /* The worker's disco pid: it names the worker in error messages and in
     * the "From worker N:" prefix. */
    int pid_label;
} disco__launch_opts;

/* One launched process. Opaque. */
typedef struct disco__launched disco__launched;

/*
 * Starts a worker process as o describes and returns at once; *out receives
 * the handle (and is left alone on failure). The cookie is already in the
 * child's stdin pipe when the child starts.
 *
 * Returns 0, DISCO_EINVAL (NULL arguments, a cookie that is empty, too long
 * or has a newline, an env entry without '='), DISCO_ENOMEM, or DISCO_ESYS
 * when the process cannot be created (pipes, threads) or the program cannot
 * be run (missing program or dir: the message names it and the reason).
 */
int disco__launch_start(const disco__launch_opts *o, disco__launched **out);

/*
 * Blocks the calling thread until the worker has printed its address line
 * (or the deadline set at launch passes), then copies the address (without
 * the prefix, NUL terminated) into addr. Returns 0. It does not park a
 * task: called inside one, it holds its scheduler thread while it waits.
 *
 * Fails, after killing the child with SIGKILL and reaping it, with:
 *   DISCO_ETIMEDOUT "worker N (os pid P) reported no address within T s";
 *   DISCO_EPROTO    "worker N (os pid P) printed 1000 lines without an
 *                    address" (lines of its stdout; stderr does not count);
 *   DISCO_EPROTO    "worker N (os pid P) exited with status S before
 *                    reporting its address" (or "was killed by signal S",
 *                    or "closed its output ...", when its stdout ended);
 *   DISCO_EPROTO    when the address line is empty or longer than
 *                    DISCO__LAUNCH_ADDR_MAX - 1 bytes.
 * A later call returns the same result. DISCO_EMSGSIZE when len is too
 * small for the address (the worker is left running), DISCO_EINVAL for
 * NULL arguments.
 */
int disco__launch_wait_address(disco__launched *l, char *addr, size_t len);

/* The operating system's process id of the worker. */
pid_t disco__launched_os_pid(const disco__launched *l);

/*
 * Sends signal sig to the worker. Returns 0, DISCO_ESTATE when the process
 * has been reaped already (its pid may belong to someone else by now), or
 * DISCO_ESYS.
 */
int disco__launched_kill(disco__launched *l, int sig);

/*
 * Waits up to timeout seconds (< 0: for ever, 0: just looks) for the worker
 * to end and reaps it; *wstatus (may be NULL) receives its wait status as
 * waitpid gives it. Once reaped, later calls return the same status at once.
 * Returns 0, DISCO_ETIMEDOUT when it is still running, DISCO_ESYS when it
 * cannot be waited for (someone else reaped it).
 */
int disco__launched_reap(disco__launched *l, double timeout, int *wstatus);

/* Called with the pid of a launched process that has ended, before it is
 * reaped (so the pid cannot be reused yet): for clean-up named after the
 * pid (see disco_transport_ops.process_ended). NULL: none. */
void disco__launched_set_exit_hook(void (*hook)(pid_t pid));

/*
 * Stops forwarding the worker's output, copying first what its pipes still
 * hold, closes the three pipes (the worker then sees EOF on stdin, as if the
 * master had died) and frees the handle. Does not kill the worker and does
 * not reap it: reap it first, or wait for its pid yourself, or it stays a
 * zombie once it ends. NULL is allowed.
 */
void disco__launched_free(disco__launched *l);

#endif

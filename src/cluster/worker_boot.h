/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The worker side of a launch (see launch.h for the master side).
 *
 * A worker started by the launcher, in this order:
 *   1. reads the cookie, the one line on its stdin (disco__worker_read_cookie);
 *   2. starts the watchdog (disco__worker_watchdog_start), which ends the
 *      process when stdin reaches EOF (the master died or let go of it) or
 *      when the master has not connected in time;
 *   3. listens, then reports its address on stdout (disco__worker_announce);
 *   4. once the master has connected and authenticated, calls
 *      disco__worker_master_connected().
 */
#ifndef DISCO_CLUSTER_WORKER_BOOT_H
#define DISCO_CLUSTER_WORKER_BOOT_H

#include <stddef.h>

/* What a worker prints, followed by its address and a newline. */
#define DISCO__WORKER_ADDRESS_PREFIX "disco-worker-address: "

/* Default of DISCO_WORKER_TIMEOUT, in seconds. */
#define DISCO__WORKER_TIMEOUT_DEFAULT 60.0

/*
 * DISCO_WORKER_TIMEOUT from the environment: seconds (fractions allowed,
 * > 0), or DISCO__WORKER_TIMEOUT_DEFAULT when unset or not a positive
 * number (a warning on stderr for the latter).
 */
double disco__worker_timeout(void);

/*
 * Reads the cookie line from stdin with read(2), one byte at a time, so
 * nothing past the newline is consumed and no copy stays in a stdio
 * buffer. The line (without its newline, or a trailing "\r\n") goes to buf
 * NUL terminated. At most min(len - 1, DISCO_CLUSTER_COOKIE_MAX) bytes are
 * accepted.
 *
 * Returns 0; DISCO_EINVAL (buf NULL or len < 2); DISCO_EPROTO when stdin
 * ends before the newline, the line is empty or too long; DISCO_ESYS when
 * stdin cannot be read. On failure buf is wiped.
 */
int disco__worker_read_cookie(char *buf, size_t len);

/*
 * Prints DISCO__WORKER_ADDRESS_PREFIX, addr and a newline on stdout with a
 * single write(2), after flushing what stdio holds for stdout (so earlier
 * printf output comes first). addr must be 1 to DISCO__LAUNCH_ADDR_MAX - 1
 * bytes without '\r' or '\n' (else DISCO_EINVAL). Returns 0 or DISCO_ESYS.
 * A worker whose master is gone gets SIGPIPE here, like any write to a pipe
 * without a reader, unless it ignores that signal.
 */
int disco__worker_announce(const char *addr);

/* Why the watchdog fires. */
enum disco__watchdog_reason {
    DISCO__WATCHDOG_MASTER_GONE = 1,     /* EOF on stdin */
    DISCO__WATCHDOG_CONNECT_TIMEOUT = 2, /* no master_connected in time */
};

/*
 * Starts the watchdog thread (signals blocked) for the rest of the process's
 * life. Call it after disco__worker_read_cookie: it reads, and discards,
 * whatever arrives on stdin.
 *
 * It fires when stdin reaches EOF or fails to read, or when connect_timeout
 * seconds pass before disco__worker_master_connected() is called
 * (connect_timeout <= 0: disco__worker_timeout(); INFINITY: never). When it
 * fires, it calls on_fire(reason, arg) if on_fire is not NULL and ends
 * (the callback then owns the decision to exit); otherwise it ends the
 * process with _exit: status 0 when the master is gone, 1 after printing
 * "disco worker: the master did not connect within T s" on stderr for the
 * timeout. If stdin is not open, only the timeout applies.
 *
 * Returns 0, DISCO_EBUSY when already started, DISCO_ESYS when the thread
 * cannot be created.
 */
int disco__worker_watchdog_start(double connect_timeout,
                                 void (*on_fire)(int reason, void *arg),
                                 void *arg);

/* The watchdog's own ending for reason (see above), for an on_fire that
 * does something first. */
_Noreturn void disco__worker_watchdog_exit(int reason);

/* Tells the watchdog that the master has connected: the connect timeout no
 * longer applies (EOF on stdin still does). Async-signal-safe. */
void disco__worker_master_connected(void);

#endif

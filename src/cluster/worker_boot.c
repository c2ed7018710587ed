/* SPDX-License-Identifier: BSD-3-Clause */
/* The worker side of a launch: cookie, address line, watchdog. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/thread.h"
#include "cluster/launch.h"
#include "cluster/worker_boot.h"
#include "disco/cluster.h"
#include "disco/error.h"

double disco__worker_timeout(void)
{
    const char *s = getenv("DISCO_WORKER_TIMEOUT");
    if (!s || !*s)
        return DISCO__WORKER_TIMEOUT_DEFAULT;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0)) {
        fprintf(stderr, "disco: ignoring DISCO_WORKER_TIMEOUT=%s: not a "
                        "positive number of seconds\n", s);
        return DISCO__WORKER_TIMEOUT_DEFAULT;
    }
    return v;
}

int disco__worker_read_cookie(char *buf, size_t len)
{
    if (!buf || len < 2)
        return disco_error_set(DISCO_EINVAL, "no room for the cookie");
    size_t max = len - 1 < DISCO_CLUSTER_COOKIE_MAX ? len - 1
                                                    : DISCO_CLUSTER_COOKIE_MAX;
    size_t n = 0;
    int rc = 0;
    char c = 0;
    for (;;) {
        ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = disco_error_set(DISCO_ESYS, "cannot read the cookie from "
                                 "standard input: %s", strerror(errno));
            break;
        }
        if (r == 0) {
            rc = disco_error_set(DISCO_EPROTO, "standard input ended before "
                                 "the cookie line was complete");
            break;
        }
        if (c == '\n')
            break;
        if (n == max) {
            rc = disco_error_set(DISCO_EPROTO, "the cookie line on standard "
                                 "input is longer than %zu bytes", max);
            break;
        }
        buf[n++] = c;
    }
    if (rc == 0 && n > 0 && buf[n - 1] == '\r')
        n--;
    if (rc == 0 && n == 0)
        rc = disco_error_set(DISCO_EPROTO, "the cookie line on standard "
                                           "input is empty");
    explicit_bzero(&c, sizeof(c));
    if (rc != 0) {
        explicit_bzero(buf, len);
        return rc;
    }
    buf[n] = '\0';
    return 0;
}

int disco__worker_announce(const char *addr)
{
    size_t alen = addr ? strlen(addr) : 0;
    if (alen == 0 || alen >= DISCO__LAUNCH_ADDR_MAX || strpbrk(addr, "\r\n"))
        return disco_error_set(DISCO_EINVAL, "invalid worker address to "
                               "announce (empty, too long or multi-line)");
    char line[sizeof(DISCO__WORKER_ADDRESS_PREFIX) + DISCO__LAUNCH_ADDR_MAX];
    int n = snprintf(line, sizeof(line), "%s%s\n",
                     DISCO__WORKER_ADDRESS_PREFIX, addr);
    fflush(stdout);
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = write(STDOUT_FILENO, line + off, (size_t)n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return disco_error_set(DISCO_ESYS, "cannot print the worker "
                                   "address on stdout: %s", strerror(errno));
        off += (size_t)w;
    }
    return 0;
}

/* ---- watchdog ------------------------------------------------------------ */

static atomic_bool watchdog_started;
/* Set by disco__worker_master_connected, read by the watchdog thread. */
static atomic_bool master_connected;

struct watchdog {
    double timeout;     /* seconds; INFINITY: none */
    void (*on_fire)(int reason, void *arg);
    void *arg;
};

static struct watchdog watchdog_cfg;

void disco__worker_watchdog_exit(int reason)
{
    if (reason == DISCO__WATCHDOG_MASTER_GONE)
        _exit(0);
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "disco worker: the master did not "
                     "connect within %g s (DISCO_WORKER_TIMEOUT); exiting\n",
                     watchdog_cfg.timeout);
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
        /* nothing more to do */
    }
    _exit(1);
}

static void fire(const struct watchdog *w, int reason)
{
    if (w->on_fire)
        w->on_fire(reason, w->arg);
    else
        disco__worker_watchdog_exit(reason);
}

/* Milliseconds until deadline for poll, at least 1 while time is left; 0
 * when it has passed. */
static int ms_until(uint64_t deadline)
{
    uint64_t now = disco__now_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static void *watchdog_main(void *p)
{
    const struct watchdog *w = p;
    bool has_deadline = isfinite(w->timeout);
    uint64_t deadline =
        has_deadline ? disco__now_ns() + disco__sec_to_ns(w->timeout) : 0;
    bool stdin_open = true;
    for (;;) {
        int wait_ms = -1;
        if (has_deadline &&
            !atomic_load_explicit(&master_connected, memory_order_acquire)) {
            wait_ms = ms_until(deadline);
            if (wait_ms == 0) {
                fire(w, DISCO__WATCHDOG_CONNECT_TIMEOUT);
                return NULL;
            }
            /* Look at the flag again now and then: master_connected does
             * not wake this thread. */
            if (wait_ms > 200)
                wait_ms = 200;
        } else if (!stdin_open) {
            return NULL; /* nothing left to watch */
        }
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&pfd, stdin_open ? 1 : 0, wait_ms);
        if (r < 0) {
            if (errno != EINTR && errno != EAGAIN)
                stdin_open = false;
            continue;
        }
        if (r == 0)
            continue;
        if (pfd.revents & POLLNVAL) {
            stdin_open = false;
            continue;
        }
        char junk[256];
        ssize_t n = read(STDIN_FILENO, junk, sizeof(junk));
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            fire(w, DISCO__WATCHDOG_MASTER_GONE);
            return NULL;
        }
        /* n > 0: the master sends nothing after the cookie; ignore it. */
    }
}

int disco__worker_watchdog_start(double connect_timeout,
                                 void (*on_fire)(int reason, void *arg),
                                 void *arg)
{
    if (atomic_exchange(&watchdog_started, true))
        return disco_error_set(DISCO_EBUSY, "the worker watchdog is "
                                            "already running");
    watchdog_cfg.timeout =
        connect_timeout > 0 ? connect_timeout : disco__worker_timeout();
    watchdog_cfg.on_fire = on_fire;
    watchdog_cfg.arg = arg;

    int err = disco__thread_start_detached(watchdog_main, &watchdog_cfg);
    if (err != 0) {
        atomic_store(&watchdog_started, false);
        return disco_error_set(DISCO_ESYS, "cannot start the worker "
                               "watchdog thread: %s", strerror(err));
    }
    return 0;
}

void disco__worker_master_connected(void)
{
    atomic_store_explicit(&master_connected, true, memory_order_release);
}

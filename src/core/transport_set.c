/* SPDX-License-Identifier: BSD-3-Clause */
/* The transports of this process: choosing, starting, progress. */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "core/transport_set.h"
#include "disco/error.h"
#include "disco/status.h"
#include "mem/mem.h"

/* Every transport this build has; TCP first. */
static const disco_transport_ops *const registry[] = {
    &disco__tcp_ops,
    &disco__shm_ops,
    &disco__ofi_ops,
};
#define NREG (sizeof(registry) / sizeof(registry[0]))

/* Whether `auto` starts a transport: every one but ofi, which only a name
 * selects (see transport_set.h). */
static bool in_auto(const disco_transport_ops *ops)
{
    return ops != &disco__ofi_ops;
}

#define SPEC_MAX 256
#define ARG_MAX 64

typedef struct choice {
    bool on, named;
    char arg[ARG_MAX]; /* "" when none */
} choice;

static int registry_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NREG; i++)
        if (strlen(registry[i]->name) == len && !strncmp(registry[i]->name, name, len))
            return (int)i;
    return -1;
}

/* Applies one item of DISCO_TRANSPORT to the choices. */
static void parse_item(const char *item, choice *c)
{
    if (!strcmp(item, "auto")) {
        for (size_t i = 0; i < NREG; i++)
            c[i].on |= in_auto(registry[i]);
        return;
    }
    bool exclude = item[0] == '^';
    const char *name = item + exclude;
    const char *colon = strchr(name, ':');
    size_t len = colon ? (size_t)(colon - name) : strlen(name);
    int k = registry_index(name, len);
    if (k < 0) {
        fprintf(stderr, "disco: DISCO_TRANSPORT: no transport '%.*s' in this build\n",
                (int)len, name);
        return;
    }
    c[k].on = !exclude;
    c[k].named = !exclude;
    snprintf(c[k].arg, sizeof(c[k].arg), "%s", colon && !exclude ? colon + 1 : "");
}

static void choose(choice *c)
{
    const char *env = getenv("DISCO_TRANSPORT");
    char spec[SPEC_MAX];
    snprintf(spec, sizeof(spec), "%s", env && *env ? env : "auto");
    char *save = NULL;
    for (char *item = strtok_r(spec, ", ", &save); item; item = strtok_r(NULL, ", ", &save))
        parse_item(item, c);
    c[0].on = true; /* TCP always: bootstrap and fallback */
}

static void set_scheme(disco__xport *x)
{
    const char *end = strstr(x->address, "://");
    size_t len = end ? (size_t)(end - x->address) : strlen(x->ops->name);
    if (len >= sizeof(x->scheme))
        len = sizeof(x->scheme) - 1;
    memcpy(x->scheme, end ? x->address : x->ops->name, len);
    x->scheme[len] = '\0';
}

static int start_one(disco__xport_set *s, const disco_transport_ops *ops, const choice *c,
                     const disco_transport_callbacks *cb)
{
    disco__xport *x = &s->x[s->n];
    x->ops = ops;
    x->index = s->n;
    int rc = ops->init(&x->tp, NULL, c->arg[0] ? c->arg : NULL, cb, x);
    if (rc == 0)
        rc = ops->local_address(x->tp, x->address, sizeof(x->address));
    if (rc) {
        char msg[256] = "";
        if (disco_last_error())
            disco_error_format(disco_last_error(), msg, sizeof(msg));
        if (c->named)
            fprintf(stderr, "disco: transport %s unavailable, going on without it: %s\n",
                    ops->name, msg);
        else
            disco__debug("transport %s unavailable: %s", ops->name, msg);
        if (x->tp)
            ops->fini(x->tp);
        memset(x, 0, sizeof(*x));
        return rc;
    }
    set_scheme(x);
    x->caps = ops->caps_of ? ops->caps_of(x->tp) : ops->caps;
    disco__debug("transport %s listening at %s", x->scheme, x->address);
    s->n++;
    return 0;
}

int disco__xports_start(disco__xport_set *s, const disco_transport_callbacks *cb)
{
    choice c[NREG] = {0};
    choose(c);
    int rc = start_one(s, registry[0], &c[0], cb);
    if (rc)
        return rc;
    for (size_t i = 1; i < NREG && s->n < DISCO__XPORTS_MAX; i++)
        if (c[i].on)
            (void)start_one(s, registry[i], &c[i], cb);
    return 0;
}

/* Once peers have moved to faster transports, TCP carries little but new
 * connections and deaths: after TCP_IDLE_POLLS empty polls it is polled
 * every TCP_IDLE_EVERY calls only (an epoll_wait costs about as much as a
 * shared-memory round trip), and at once again after it had something. A
 * blocking wait still watches it. */
#define TCP_IDLE_POLLS 256
#define TCP_IDLE_EVERY 2048

static int poll_all(disco__xport_set *s, bool all)
{
    int n = 0, err = 0;
    s->polls++;
    bool tcp = all || s->tcp_idle < TCP_IDLE_POLLS || s->polls % TCP_IDLE_EVERY == 0;
    for (int i = tcp ? 0 : 1; i < s->n; i++) {
        int rc = s->x[i].ops->progress(s->x[i].tp, 0);
        if (i == 0)
            s->tcp_idle = rc > 0 ? 0 : s->tcp_idle + (s->tcp_idle < TCP_IDLE_POLLS);
        if (rc > 0)
            n += rc;
        else if (rc < 0 && !err)
            err = rc;
    }
    return n ? n : err;
}

int disco__xports_progress(disco__xport_set *s, int timeout_ms)
{
    if (s->n == 1)
        return s->x[0].ops->progress(s->x[0].tp, timeout_ms);
    int n = poll_all(s, false);
    if (n != 0 || timeout_ms == 0)
        return n;
    struct pollfd fds[DISCO__XPORTS_MAX];
    bool pending = false;
    for (int i = 0; i < s->n && !pending; i++) {
        fds[i] = (struct pollfd){.fd = s->x[i].ops->wait_fd(s->x[i].tp), .events = POLLIN};
        pending = s->x[i].ops->wait_arm(s->x[i].tp) > 0;
    }
    if (!pending)
        (void)poll(fds, (nfds_t)s->n, timeout_ms); /* EINTR: progress below */
    return poll_all(s, true); /* ends the armed state of each */
}

void disco__xports_interrupt(disco__xport_set *s)
{
    for (int i = 0; i < s->n; i++)
        s->x[i].ops->interrupt(s->x[i].tp);
}

void disco__xports_fini(disco__xport_set *s)
{
    for (int i = s->n - 1; i >= 0; i--) {
        disco__mem_forget(&s->x[i]); /* registrations end before their transport */
        s->x[i].ops->fini(s->x[i].tp);
    }
    s->n = 0;
}

void disco__xports_quiesce(disco__xport_set *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->x[i].ops->quiesce)
            s->x[i].ops->quiesce(s->x[i].tp);
}

void disco__xports_process_ended(disco__xport_set *s, pid_t pid)
{
    for (int i = 0; i < s->n; i++)
        if (s->x[i].ops->process_ended)
            s->x[i].ops->process_ended(s->x[i].tp, pid);
}

disco__xport *disco__xport_find(disco__xport_set *s, const char *scheme)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->x[i].scheme, scheme))
            return &s->x[i];
    return NULL;
}

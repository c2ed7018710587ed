/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"

struct disco_error {
    int code;
    int pid;
    char *message;
    size_t n;
    disco_error **nested;
};

static disco_error *error_vnew(int code, const char *fmt, va_list ap)
{
    disco_error *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->code = code;
    if (vasprintf(&e->message, fmt, ap) < 0) {
        free(e);
        return NULL;
    }
    return e;
}

disco_error *disco_error_new(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    disco_error *e = error_vnew(code, fmt, ap);
    va_end(ap);
    return e;
}

disco_error *disco_error_composite(disco_error **parts, size_t n)
{
    disco_error *e = disco_error_new(DISCO_ECOMPOSITE, "%zu task%s failed", n,
                                     n == 1 ? "" : "s");
    if (!e)
        goto fail;
    e->nested = malloc(n * sizeof(*e->nested));
    if (n && !e->nested)
        goto fail;
    if (n)
        memcpy(e->nested, parts, n * sizeof(*parts));
    e->n = n;
    return e;
fail:
    disco_error_free(e);
    for (size_t i = 0; i < n; i++)
        disco_error_free(parts[i]);
    return NULL;
}

disco_error *disco_error_copy(const disco_error *src)
{
    if (!src)
        return NULL;
    disco_error *e = disco_error_new(src->code, "%s", src->message);
    if (!e)
        return NULL;
    e->pid = src->pid;
    if (src->n) {
        e->nested = calloc(src->n, sizeof(*e->nested));
        if (!e->nested)
            goto fail;
        e->n = src->n;
        for (size_t i = 0; i < src->n; i++)
            if (!(e->nested[i] = disco_error_copy(src->nested[i])))
                goto fail;
    }
    return e;
fail:
    disco_error_free(e);
    return NULL;
}

void disco_error_free(disco_error *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        disco_error_free(e->nested[i]);
    free(e->nested);
    free(e->message);
    free(e);
}

void disco__error_set_pid(disco_error *e, int pid) { e->pid = pid; }

int disco__error_set_message(disco_error *e, const char *msg, size_t len)
{
    char *m = strndup(msg, len);
    if (!m)
        return DISCO_ENOMEM;
    free(e->message);
    e->message = m;
    return 0;
}

int disco_error_code(const disco_error *e) { return e->code; }
const char *disco_error_message(const disco_error *e) { return e->message; }
int disco_error_pid(const disco_error *e) { return e->pid; }
size_t disco_error_count(const disco_error *e) { return e->n; }

const disco_error *disco_error_nested(const disco_error *e, size_t i)
{
    return i < e->n ? e->nested[i] : NULL;
}

/* Appends to buf like snprintf, keeping the count of what the whole text
 * needs in *used even after buf is full. */
static void put(char *buf, size_t len, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = *used < len ? len - *used : 0;
    int n = vsnprintf(room ? buf + *used : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n;
}

static void format_at(const disco_error *e, int depth, char *buf, size_t len,
                      size_t *used)
{
    if (e->pid)
        put(buf, len, used, "On worker %d: ", e->pid);
    put(buf, len, used, "%s", e->message);
    for (size_t i = 0; i < e->n; i++) {
        put(buf, len, used, "\n%*s[%zu] ", 2 * (depth + 1), "", i + 1);
        format_at(e->nested[i], depth + 1, buf, len, used);
    }
}

size_t disco_error_format(const disco_error *e, char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    format_at(e, 0, buf, len, &used);
    return used;
}

int disco_error_put(disco_error *e)
{
    disco_error **slot = disco__error_slot();
    disco_error_free(*slot);
    *slot = e;
    return e ? e->code : DISCO_ENOMEM;
}

int disco_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    disco_error *e = error_vnew(code, fmt, ap);
    va_end(ap);
    disco_error_put(e);
    return code;
}

const disco_error *disco_last_error(void) { return *disco__error_slot(); }

disco_error *disco_error_take(void)
{
    disco_error **slot = disco__error_slot();
    disco_error *e = *slot;
    *slot = NULL;
    return e;
}

void disco_error_clear(void)
{
    disco_error **slot = disco__error_slot();
    if (*slot) { /* most often there is none: no call to free it */
        disco_error_free(*slot);
        *slot = NULL;
    }
}

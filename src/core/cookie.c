/* SPDX-License-Identifier: BSD-3-Clause */
/* The cluster cookie (disco/cluster.h). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "disco/cluster.h"
#include "disco/error.h"

#define COOKIE_RANDOM_BYTES 32

/*
 * Every cookie the process has had, newest first. Strings are never freed or
 * changed once published, so the pointer disco_cluster_cookie returned stays
 * valid while another thread sets a new cookie. Setting is rare (once, at
 * worker start), so keeping old ones costs a few hundred bytes at most; the
 * chain keeps them reachable (no leak report).
 */
struct cookie_node {
    struct cookie_node *older;
    char text[];
};

static pthread_mutex_t cookie_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct cookie_node *) cookie_current;

static struct cookie_node *node_new(const char *text, size_t len)
{
    struct cookie_node *n = malloc(sizeof(*n) + len + 1);
    if (!n)
        return NULL;
    memcpy(n->text, text, len);
    n->text[len] = '\0';
    return n;
}

/* Publishes n as the current cookie. Called with cookie_lock held. */
static void publish(struct cookie_node *n)
{
    n->older = atomic_load_explicit(&cookie_current, memory_order_relaxed);
    atomic_store_explicit(&cookie_current, n, memory_order_release);
}

static struct cookie_node *generate(void)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[COOKIE_RANDOM_BYTES];
    char text[2 * COOKIE_RANDOM_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        disco_error_set(DISCO_ESYS, "cannot generate the cluster cookie: "
                                    "the random number generator failed");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        text[2 * i] = hex[raw[i] >> 4];
        text[2 * i + 1] = hex[raw[i] & 0xf];
    }
    struct cookie_node *n = node_new(text, sizeof(text));
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(text, sizeof(text));
    if (!n)
        disco_error_set(DISCO_ENOMEM, "out of memory for the cluster cookie");
    return n;
}

const char *disco_cluster_cookie(void)
{
    struct cookie_node *n =
        atomic_load_explicit(&cookie_current, memory_order_acquire);
    if (n)
        return n->text;
    /* First use: generate under the lock so that concurrent first callers
     * all get the same cookie. */
    pthread_mutex_lock(&cookie_lock);
    n = atomic_load_explicit(&cookie_current, memory_order_relaxed);
    if (!n && (n = generate()) != NULL)
        publish(n);
    pthread_mutex_unlock(&cookie_lock);
    return n ? n->text : NULL;
}

int disco_cluster_cookie_set(const char *cookie)
{
    if (!cookie)
        return disco_error_set(DISCO_EINVAL, "cluster cookie is NULL");
    size_t len = strnlen(cookie, DISCO_CLUSTER_COOKIE_MAX + 1);
    if (len == 0)
        return disco_error_set(DISCO_EINVAL, "cluster cookie is empty");
    if (len > DISCO_CLUSTER_COOKIE_MAX)
        return disco_error_set(DISCO_EINVAL,
                               "cluster cookie is longer than %d bytes",
                               DISCO_CLUSTER_COOKIE_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)cookie[i];
        if (c < 0x20 || c > 0x7e)
            return disco_error_set(DISCO_EINVAL,
                                   "cluster cookie byte %zu is 0x%02x: only "
                                   "printable ASCII (0x20 to 0x7e) is allowed",
                                   i, c);
    }
    struct cookie_node *n = node_new(cookie, len);
    if (!n)
        return disco_error_set(DISCO_ENOMEM,
                               "out of memory for the cluster cookie");
    pthread_mutex_lock(&cookie_lock);
    publish(n);
    pthread_mutex_unlock(&cookie_lock);
    return 0;
}

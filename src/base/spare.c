/* SPDX-License-Identifier: BSD-3-Clause */
/* Spares (spare.h): a thread registers its slots with a key whose
 * destructor frees them on the thread's first put. */
#include <pthread.h>

#include "base/spare.h"

DISCO__TLS void *disco__spares[DISCO__SPARE_KINDS];
DISCO__TLS bool disco__spares_kept;

#ifndef DISCO_ASAN /* nothing is kept there */
static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void free_spares(void *slots)
{
    void **s = slots;
    for (int k = 0; k < DISCO__SPARE_KINDS; k++) {
        free(s[k]);
        s[k] = NULL;
    }
}

static void make_key(void) { (void)pthread_key_create(&key, free_spares); }
#endif

void disco__spare_put_slow(disco__spare_kind k, void *block)
{
#ifndef DISCO_ASAN
    if (!disco__spares_kept) {
        pthread_once(&key_once, make_key);
        disco__spares_kept = pthread_setspecific(key, disco__spares) == 0;
    }
    if (disco__spares_kept && !disco__spares[k]) {
        disco__spares[k] = block;
        return;
    }
#else
    (void)k;
#endif
    free(block);
}

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Task structs are recycled through per-worker caches and a shared depot of
 * "magazines" (lists of MAG structs), after Bonwick's magazine allocator.
 * Tasks are often created on one worker and retired on another (a thief);
 * without the depot the creator would malloc every struct and the thief
 * free() it into a foreign arena, which serialises both on malloc's lock.
 * A worker moves whole magazines to or from the depot, so the depot's lock
 * is taken once per MAG tasks. Foreign threads use malloc directly.
 */
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

#define MAG 256           /* tasks per magazine */
#define DEPOT_MAX 1024 /* magazines kept (~35 MB of structs at most);
                        * beyond, structs go back to malloc */

static struct {
    disco__spin lock;
    disco_task *mag[DEPOT_MAX];
    unsigned n;
} depot;

disco_task *disco__task_alloc(disco__worker *w)
{
    disco_task *t = NULL;
    if (w) {
        if (!w->free_tasks) {
            disco__spin_lock(&depot.lock);
            if (depot.n)
                w->free_tasks = depot.mag[--depot.n];
            disco__spin_unlock(&depot.lock);
            if (w->free_tasks)
                w->n_free_tasks = MAG;
        }
        if ((t = w->free_tasks)) {
            w->free_tasks = t->next_free;
            w->n_free_tasks--;
        }
    }
    if (!t && !(t = malloc(sizeof(*t))))
        return NULL;
    memset(t, 0, sizeof(*t));
    return t;
}

static void free_list(disco_task *t)
{
    while (t) {
        disco_task *next = t->next_free;
        free(t);
        t = next;
    }
}

void disco__task_dealloc(disco__worker *w, disco_task *t)
{
    if (!w) {
        free(t);
        return;
    }
    t->next_free = w->free_tasks;
    w->free_tasks = t;
    if (++w->n_free_tasks < 2 * MAG)
        return;
    /* Hand the MAG most recently freed structs to the depot. */
    disco_task *mag = w->free_tasks, *last = mag;
    for (unsigned i = 1; i < MAG; i++)
        last = last->next_free;
    w->free_tasks = last->next_free;
    w->n_free_tasks -= MAG;
    last->next_free = NULL;
    disco__spin_lock(&depot.lock);
    if (depot.n < DEPOT_MAX) {
        depot.mag[depot.n++] = mag;
        mag = NULL;
    }
    disco__spin_unlock(&depot.lock);
    free_list(mag);
}

void disco__task_cache_drain(disco__worker *w)
{
    free_list(w->free_tasks);
    w->free_tasks = NULL;
    w->n_free_tasks = 0;
}

void disco__task_depot_drain(void)
{
    disco__spin_lock(&depot.lock);
    while (depot.n)
        free_list(depot.mag[--depot.n]);
    disco__spin_unlock(&depot.lock);
}

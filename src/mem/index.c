/* SPDX-License-Identifier: BSD-3-Clause */
/* The sorted array of regions (region.h): binary search, insert, remove. */
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "mem/region.h"

/* Publishes the span for intercept.c's filter. */
static void update_span(void)
{
    disco__mem_state *m = &disco__mem;
    atomic_store(&m->nregions, m->n);
    if (m->n) {
        atomic_store(&m->lo, m->v[0]->addr);
        atomic_store(&m->hi, m->v[m->n - 1]->addr + m->v[m->n - 1]->len);
    }
}

size_t disco__mem_index_find(uintptr_t a)
{
    disco__mem_state *m = &disco__mem;
    size_t lo = 0, hi = m->n; /* regions are disjoint: ends sort like starts */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->v[mid]->addr + m->v[mid]->len > a)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

int disco__mem_index_insert(disco__mem_region *rg)
{
    disco__mem_state *m = &disco__mem;
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        disco__mem_region **v = realloc(m->v, cap * sizeof(*v));
        if (!v)
            return disco_error_set(DISCO_ENOMEM, "no memory for a memory region");
        m->v = v;
        m->cap = cap;
    }
    size_t i = disco__mem_index_find(rg->addr);
    memmove(&m->v[i + 1], &m->v[i], (m->n - i) * sizeof(*m->v));
    m->v[i] = rg;
    m->n++;
    m->gen++;
    update_span();
    return 0;
}

void disco__mem_index_remove(size_t i)
{
    disco__mem_state *m = &disco__mem;
    memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
    m->n--;
    m->gen++;
    update_span();
}

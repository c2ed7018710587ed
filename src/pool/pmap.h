/* SPDX-License-Identifier: BSD-3-Clause */
/* pmap inside libdisco: what the caller and the workers' batch runner share. */
#ifndef DISCO_POOL_PMAP_H
#define DISCO_POOL_PMAP_H

#include "disco/pool.h"

/* Item i of a collection (a list or a numeric array) as a borrowed value. */
static inline disco_value disco__pmap_item(const disco_value *coll, size_t i)
{
    if (coll->type == DISCO_LIST)
        return coll->list.items[i];
    const void *d = coll->array.data;
    switch (coll->array.elem) {
    case DISCO_ELEM_U8: return disco_i64(((const uint8_t *)d)[i]);
    case DISCO_ELEM_I32: return disco_i64(((const int32_t *)d)[i]);
    case DISCO_ELEM_I64: return disco_i64(((const int64_t *)d)[i]);
    case DISCO_ELEM_F32: return disco_f64(((const float *)d)[i]);
    case DISCO_ELEM_F64: return disco_f64(((const double *)d)[i]);
    }
    return disco_nil();
}

/* Length of a collection, or SIZE_MAX when it is not one. */
static inline size_t disco__pmap_length(const disco_value *coll)
{
    if (coll->type == DISCO_LIST)
        return coll->list.n;
    if (coll->type == DISCO_ARRAY && disco_elem_size(coll->array.elem))
        return coll->array.n;
    return SIZE_MAX;
}

/* Items lo..lo+n of a collection, borrowed. */
static inline disco_value disco__pmap_slice(const disco_value *coll, size_t lo, size_t n)
{
    if (coll->type == DISCO_LIST)
        return disco_list(coll->list.items + lo, n);
    return disco_array(coll->array.elem,
                       (const char *)coll->array.data + lo * disco_elem_size(coll->array.elem),
                       n);
}

/* Most collections a pmap zips. */
enum { DISCO__PMAP_MAX_COLLECTIONS = 16 };

/* Draws the progress bar (a final one ends the line). */
void disco__progress_bar(const disco_pmap_progress *p, bool last);

#endif

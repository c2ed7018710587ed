/* SPDX-License-Identifier: BSD-3-Clause */
/* Values: freeing owned values and deep copies. */
#include <stdlib.h>
#include <string.h>

#include "disco/mem.h"
#include "disco/value.h"
#include "wire/ref_hooks.h"
#include "wire/wire.h"

const disco__ref_hooks *disco__refs;

void disco_value_free(disco_value *v)
{
    if (!v)
        return;
    if (v->flags & DISCO_VALUE_OWNED) {
        /* The pointers are const for the borrowing user; owned memory came
         * from malloc, so casting the const away to free it is sound. */
        switch (v->type) {
        case DISCO_STRING: free((void *)v->str.ptr); break;
        case DISCO_BYTES:
        case DISCO_ARRAY: {
            void *data = (void *)(v->type == DISCO_BYTES ? v->bytes.ptr : v->array.data);
            if (v->flags & DISCO__VALUE_POOLED) /* received by rendezvous */
                disco_mem_free(data);
            else
                free(data);
            break;
        }
        case DISCO_LIST: {
            disco_value *items = (disco_value *)v->list.items;
            for (size_t i = 0; i < v->list.n; i++)
                disco_value_free(&items[i]);
            if (!(v->flags & DISCO__VALUE_INPLACE))
                free(items);
            break;
        }
        case DISCO_ERROR: disco_error_free((disco_error *)v->error); break;
        case DISCO_REF:
            if (disco__refs)
                disco__refs->drop(&v->ref);
            break;
        default: break;
        }
    }
    *v = disco_nil();
}

/* A heap copy of n bytes (plus a NUL when nul is set); NULL when out of
 * memory. Empty non-string payloads stay NULL without allocating. */
static int dup_bytes(const void *src, size_t n, int nul, void **out)
{
    *out = NULL;
    if (!n && !nul)
        return 0;
    if (n > SIZE_MAX - 1)
        return DISCO_ENOMEM;
    char *p = malloc(n + (nul ? 1 : 0));
    if (!p)
        return DISCO_ENOMEM;
    if (n)
        memcpy(p, src, n);
    if (nul)
        p[n] = '\0';
    *out = p;
    return 0;
}

static int copy_at(disco_value *dst, const disco_value *src, int depth)
{
    *dst = disco_nil();
    void *p = NULL;
    int rc = 0;
    switch (src->type) {
    case DISCO_NIL:
    case DISCO_BOOL:
    case DISCO_I64:
    case DISCO_F64:
        *dst = *src;
        dst->flags = DISCO_VALUE_OWNED;
        return 0;
    case DISCO_REF:
        *dst = *src;
        dst->flags = DISCO_VALUE_OWNED;
        if (disco__refs)
            disco__refs->hold(&src->ref);
        return 0;
    case DISCO_STRING:
    case DISCO_BYTES: {
        /* str and bytes have the same layout but distinct member types. */
        const void *ptr =
            src->type == DISCO_STRING ? (const void *)src->str.ptr : src->bytes.ptr;
        size_t len = src->type == DISCO_STRING ? src->str.len : src->bytes.len;
        if (len && !ptr)
            return disco_error_set(DISCO_EINVAL, "value copy: NULL %s with length %zu",
                                   src->type == DISCO_STRING ? "string" : "bytes", len);
        if ((rc = dup_bytes(ptr, len, src->type == DISCO_STRING, &p)))
            return disco_error_set(rc, "value copy: no memory for %zu bytes", len);
        *dst = *src;
        if (src->type == DISCO_STRING)
            dst->str.ptr = p;
        else
            dst->bytes.ptr = p;
        break;
    }
    case DISCO_ARRAY: {
        size_t es = disco_elem_size(src->array.elem);
        if (!es)
            return disco_error_set(DISCO_EINVAL, "value copy: unknown element type %d",
                                   (int)src->array.elem);
        if (src->array.n && !src->array.data)
            return disco_error_set(DISCO_EINVAL, "value copy: NULL array of %zu elements",
                                   src->array.n);
        if (src->array.n > SIZE_MAX / es)
            return disco_error_set(DISCO_EINVAL,
                                   "value copy: array of %zu elements too large",
                                   src->array.n);
        if ((rc = dup_bytes(src->array.data, src->array.n * es, 0, &p)))
            return disco_error_set(rc, "value copy: no memory for %zu array elements",
                                   src->array.n);
        *dst = *src;
        dst->array.data = p;
        break;
    }
    case DISCO_LIST: {
        size_t n = src->list.n;
        if (depth + 1 > DISCO_VALUE_MAX_DEPTH)
            return disco_error_set(DISCO_EINVAL,
                                   "value copy: lists nested deeper than %d",
                                   DISCO_VALUE_MAX_DEPTH);
        if (n && !src->list.items)
            return disco_error_set(DISCO_EINVAL, "value copy: NULL list of %zu items", n);
        disco_value *items = NULL;
        if (n) {
            if (!(items = calloc(n, sizeof(*items))))
                return disco_error_set(DISCO_ENOMEM,
                                       "value copy: no memory for %zu items", n);
            for (size_t i = 0; i < n; i++) {
                if ((rc = copy_at(&items[i], &src->list.items[i], depth + 1))) {
                    for (size_t j = 0; j < i; j++)
                        disco_value_free(&items[j]);
                    free(items);
                    return rc;
                }
            }
        }
        *dst = *src;
        dst->list.items = items;
        break;
    }
    case DISCO_ERROR: {
        if (!src->error)
            return disco_error_set(DISCO_EINVAL, "value copy: NULL error");
        disco_error *e = disco_error_copy(src->error);
        if (!e)
            return disco_error_set(DISCO_ENOMEM, "value copy: no memory for an error");
        *dst = *src;
        dst->error = e;
        break;
    }
    default:
        return disco_error_set(DISCO_EINVAL, "value copy: unknown type %d",
                               (int)src->type);
    }
    dst->flags = DISCO_VALUE_OWNED;
    return 0;
}

int disco_value_copy(disco_value *dst, const disco_value *src)
{
    if (!dst || !src) {
        if (dst)
            *dst = disco_nil();
        return disco_error_set(DISCO_EINVAL, "value copy: NULL argument");
    }
    /* Through a temporary so that dst may be src. */
    disco_value tmp;
    int rc = copy_at(&tmp, src, 0);
    *dst = tmp;
    return rc;
}

/* SPDX-License-Identifier: BSD-3-Clause */
/* Value encoding and decoding. The format is described in wire.h. */
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/error_internal.h"
#include "disco/mem.h"
#include "wire/ref_hooks.h"
#include "wire/wire.h"

/* The element-type and ref-kind bytes on the wire are the public enum
 * values, so those enums are part of the protocol too. */
_Static_assert(DISCO_ELEM_U8 == 0 && DISCO_ELEM_I32 == 1 && DISCO_ELEM_I64 == 2 &&
                   DISCO_ELEM_F32 == 3 && DISCO_ELEM_F64 == 4,
               "disco_elem values are wire bytes");
_Static_assert(DISCO_REF_FUTURE == 1 && DISCO_REF_CHANNEL == 2,
               "disco_ref_kind values are wire bytes");
_Static_assert(sizeof(double) == 8, "f64 is 8 bytes");

/* A future that carries its value (DISCO_REF_CARRIES) sets this bit in its
 * kind byte and is followed, after its id, by the encoded value. */
#define CARRIES_BIT 0x80u

/* The smallest error body: code, pid, message length, nested count. */
#define ERROR_BODY_MIN 4

static uint64_t zigzag(int64_t x)
{
    return ((uint64_t)x << 1) ^ (x < 0 ? UINT64_MAX : 0);
}

static int64_t unzigzag(uint64_t u) { return (int64_t)((u >> 1) ^ (0 - (u & 1))); }

/* ======================================================================
 * Encoding
 * ====================================================================== */

/* A bounded writer; with buf == NULL it only counts (for encoded_size). */
typedef struct writer {
    uint8_t *buf;
    size_t cap;
    size_t pos;
    const disco__rdv_out *rdv;
    bool quiet; /* no room: DISCO__ENCODE_NO_ROOM, no error set */
} writer;

static int no_room(const writer *w, size_t n)
{
    if (w->quiet)
        return DISCO__ENCODE_NO_ROOM;
    return disco_error_set(DISCO_EMSGSIZE,
                           "value encode: %zu bytes to write at offset %zu, only %zu fit", n,
                           w->pos, w->cap - w->pos);
}

static inline int put(writer *w, const void *p, size_t n)
{
    if (n > w->cap - w->pos)
        return no_room(w, n);
    if (w->buf && n)
        memcpy(w->buf + w->pos, p, n);
    w->pos += n;
    return 0;
}

/* Tags and varints: the small writes of every message, inlined without a
 * memcpy call each. */
static inline int put_u8(writer *w, uint8_t b)
{
    if (w->pos == w->cap)
        return no_room(w, 1);
    if (w->buf)
        w->buf[w->pos] = b;
    w->pos++;
    return 0;
}

static inline int put_varint(writer *w, uint64_t x)
{
    size_t n = 1;
    for (uint64_t y = x; y >= 0x80; y >>= 7)
        n++;
    if (n > w->cap - w->pos)
        return no_room(w, n);
    if (w->buf) {
        uint8_t *p = w->buf + w->pos;
        for (; x >= 0x80; x >>= 7)
            *p++ = (uint8_t)(x | 0x80);
        *p = (uint8_t)x;
    }
    w->pos += n;
    return 0;
}

static int put_zigzag(writer *w, int64_t x) { return put_varint(w, zigzag(x)); }

/* A run of payload data: counted as a copy when written. */
static inline int put_data(writer *w, const void *p, size_t n)
{
    int rc = put(w, p, n);
    if (rc == 0 && w->buf)
        disco__count_copy(n);
    return rc;
}

/* A length-prefixed run of bytes. */
static int put_blob(writer *w, const void *p, size_t n)
{
    int rc = put_varint(w, n);
    return rc ? rc : put_data(w, p, n);
}

static int put_u64(writer *w, uint64_t x) { return put(w, &x, 8); } /* little-endian host */

/* Whether data p[0..n) goes by rendezvous. */
static inline bool by_rdv(const writer *w, const void *p, size_t n)
{
    return w->rdv && n && n >= w->rdv->min &&
           (!w->rdv->wants || w->rdv->wants(w->rdv->ctx, p, n));
}

/* The rendezvous descriptor of data p[0..n) (its tags already written);
 * while counting, room for the longest key. */
static int put_rdv(writer *w, const void *p, size_t n)
{
    disco__rdv_desc d = {.keylen = DISCO__RDV_KEY_MAX};
    int rc;
    if (w->buf && (rc = w->rdv->expose(w->rdv->ctx, p, n, &d)))
        return rc;
    if ((rc = put_u64(w, d.addr)) || (rc = put_u8(w, d.keylen)))
        return rc;
    return put(w, d.key, d.keylen);
}

static int invalid(const char *what, size_t at)
{
    return disco_error_set(DISCO_EINVAL, "value encode: %s (at offset %zu)", what, at);
}

/* An error body at nesting depth `depth` (counting this error). */
static int encode_error(writer *w, const disco_error *e, int depth)
{
    if (depth > DISCO_VALUE_MAX_DEPTH)
        return invalid("errors nested deeper than DISCO_VALUE_MAX_DEPTH", w->pos);
    int pid = disco_error_pid(e);
    if (pid < 0)
        return invalid("negative pid in an error", w->pos);
    const char *msg = disco_error_message(e);
    size_t n = disco_error_count(e);
    int rc;
    if ((rc = put_zigzag(w, disco_error_code(e))) ||
        (rc = put_varint(w, (uint64_t)pid)) || (rc = put_blob(w, msg, strlen(msg))) ||
        (rc = put_varint(w, n)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        const disco_error *sub = disco_error_nested(e, i);
        if (!sub)
            return invalid("composite error with a NULL part", w->pos);
        if ((rc = encode_error(w, sub, depth + 1)))
            return rc;
    }
    return 0;
}

/* v inside `depth` enclosing containers. */
static int encode_value(writer *w, const disco_value *v, int depth)
{
    int rc;
    /* Strings and bytes of a one-byte length, most arguments and results:
     * tag, length and data at once when they fit (str and bytes share
     * their layout). */
    if ((v->type == DISCO_BYTES || v->type == DISCO_STRING) && w->buf &&
        v->bytes.len < 0x80 && v->bytes.ptr && w->cap - w->pos >= 2 + v->bytes.len &&
        !by_rdv(w, v->bytes.ptr, v->bytes.len)) {
        uint8_t *p = w->buf + w->pos;
        p[0] = v->type == DISCO_BYTES ? DISCO__TAG_BYTES : DISCO__TAG_STRING;
        p[1] = (uint8_t)v->bytes.len;
        memcpy(p + 2, v->bytes.ptr, v->bytes.len);
        w->pos += 2 + v->bytes.len;
        disco__count_copy(v->bytes.len);
        return 0;
    }
    switch (v->type) {
    case DISCO_NIL: return put_u8(w, DISCO__TAG_NIL);
    case DISCO_BOOL: return put_u8(w, v->b ? DISCO__TAG_TRUE : DISCO__TAG_FALSE);
    case DISCO_I64:
        if ((rc = put_u8(w, DISCO__TAG_I64)))
            return rc;
        return put_zigzag(w, v->i);
    case DISCO_F64:
        /* The bits as they are (little-endian host): NaN payloads survive. */
        if ((rc = put_u8(w, DISCO__TAG_F64)))
            return rc;
        return put(w, &v->f, 8);
    case DISCO_STRING:
        if (v->str.len && !v->str.ptr)
            return invalid("NULL string with a non-zero length", w->pos);
        if ((rc = put_u8(w, DISCO__TAG_STRING)))
            return rc;
        return put_blob(w, v->str.ptr, v->str.len);
    case DISCO_BYTES:
        if (v->bytes.len && !v->bytes.ptr)
            return invalid("NULL bytes with a non-zero length", w->pos);
        if (by_rdv(w, v->bytes.ptr, v->bytes.len)) {
            if ((rc = put_u8(w, DISCO__TAG_RDV)) || (rc = put_u8(w, DISCO__TAG_BYTES)) ||
                (rc = put_varint(w, v->bytes.len)))
                return rc;
            return put_rdv(w, v->bytes.ptr, v->bytes.len);
        }
        if ((rc = put_u8(w, DISCO__TAG_BYTES)))
            return rc;
        return put_blob(w, v->bytes.ptr, v->bytes.len);
    case DISCO_ARRAY: {
        size_t es = disco_elem_size(v->array.elem);
        if (!es)
            return invalid("unknown array element type", w->pos);
        if (v->array.n && !v->array.data)
            return invalid("NULL array with a non-zero length", w->pos);
        if (v->array.n > SIZE_MAX / es)
            return invalid("array larger than memory", w->pos);
        bool rdv = by_rdv(w, v->array.data, v->array.n * es);
        if ((rdv && (rc = put_u8(w, DISCO__TAG_RDV))) || (rc = put_u8(w, DISCO__TAG_ARRAY)) ||
            (rc = put_u8(w, (uint8_t)v->array.elem)) || (rc = put_varint(w, v->array.n)))
            return rc;
        return rdv ? put_rdv(w, v->array.data, v->array.n * es)
                   : put_data(w, v->array.data, v->array.n * es);
    }
    case DISCO_LIST:
        if (depth + 1 > DISCO_VALUE_MAX_DEPTH)
            return invalid("lists nested deeper than DISCO_VALUE_MAX_DEPTH", w->pos);
        if (v->list.n && !v->list.items)
            return invalid("NULL list with a non-zero length", w->pos);
        if ((rc = put_u8(w, DISCO__TAG_LIST)) || (rc = put_varint(w, v->list.n)))
            return rc;
        for (size_t i = 0; i < v->list.n; i++)
            if ((rc = encode_value(w, &v->list.items[i], depth + 1)))
                return rc;
        return 0;
    case DISCO_REF:
        if (v->ref.kind != DISCO_REF_FUTURE && v->ref.kind != DISCO_REF_CHANNEL)
            return invalid("unknown reference kind", w->pos);
    {
        /* A carrying future: kind byte with CARRIES_BIT, then its value. */
        bool carries = v->ref.kind == DISCO_REF_FUTURE && (v->ref.flags & DISCO_REF_CARRIES);
        const disco_value *cv = NULL;
        if (carries && (depth + 1 > DISCO_VALUE_MAX_DEPTH || !disco__refs ||
                        !(cv = disco__refs->carried(&v->ref))))
            return invalid("a carrying future without its value", w->pos);
        if ((rc = put_u8(w, DISCO__TAG_REF)) ||
            (rc = put_u8(w, (uint8_t)(v->ref.kind | (carries ? CARRIES_BIT : 0)))) ||
            (rc = put_zigzag(w, v->ref.where)) || (rc = put_zigzag(w, v->ref.whence)) ||
            (rc = put_varint(w, v->ref.id)))
            return rc;
        return carries ? encode_value(w, cv, depth + 1) : 0;
    }
    case DISCO_ERROR:
        if (!v->error)
            return invalid("NULL error", w->pos);
        if ((rc = put_u8(w, DISCO__TAG_ERROR)))
            return rc;
        return encode_error(w, v->error, depth + 1);
    }
    return invalid("unknown value type", w->pos);
}

size_t disco__value_encoded_size(const disco_value *v)
{
    return disco__value_encoded_size_rdv(v, NULL);
}

size_t disco__value_encoded_size_rdv(const disco_value *v, const disco__rdv_out *rdv)
{
    if (!v) {
        disco_error_set(DISCO_EINVAL, "value encode: NULL value");
        return 0;
    }
    writer w = {NULL, SIZE_MAX, 0, rdv, false};
    return encode_value(&w, v, 0) ? 0 : w.pos;
}

int disco__value_encode(const disco_value *v, uint8_t *buf, size_t cap, size_t *used)
{
    return disco__value_encode_rdv(v, buf, cap, used, NULL);
}

int disco__value_encode_rdv(const disco_value *v, uint8_t *buf, size_t cap, size_t *used,
                            const disco__rdv_out *rdv)
{
    if (used)
        *used = 0;
    if (!v || (!buf && cap))
        return disco_error_set(DISCO_EINVAL, "value encode: NULL %s",
                               v ? "buffer" : "value");
    /* A NULL buffer has cap 0 here: the first write fails, nothing is
     * dereferenced. */
    writer w = {buf, cap, 0, rdv, false};
    int rc = encode_value(&w, v, 0);
    if (!rc && used)
        *used = w.pos;
    return rc;
}

int disco__value_try_encode_rdv(const disco_value *v, uint8_t *buf, size_t cap, size_t *used,
                                const disco__rdv_out *rdv)
{
    if (used)
        *used = 0;
    if (!v || !buf)
        return disco_error_set(DISCO_EINVAL, "value encode: NULL %s",
                               v ? "buffer" : "value");
    writer w = {buf, cap, 0, rdv, true};
    int rc = encode_value(&w, v, 0);
    if (!rc && used)
        *used = w.pos;
    return rc;
}

/* ======================================================================
 * Decoding
 * ====================================================================== */

typedef struct reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    disco__rdv_in *rdv;
    disco_value *room; /* for the outermost list's items (nroom of them) */
    size_t nroom;
} reader;

static size_t left(const reader *r) { return r->len - r->pos; }

static int malformed_at(size_t at, const char *what)
{
    return disco_error_set(DISCO_EPROTO, "value decode: %s at offset %zu", what, at);
}

static int truncated(const reader *r, const char *what, uint64_t need)
{
    return disco_error_set(DISCO_EPROTO,
                           "value decode: truncated %s at offset %zu: needs %llu "
                           "bytes, %zu left",
                           what, r->pos, (unsigned long long)need, left(r));
}

static int nomem(const char *what, size_t n)
{
    return disco_error_set(DISCO_ENOMEM, "value decode: no memory for %s of %zu", what,
                           n);
}

static inline int get_u8(reader *r, const char *what, uint8_t *out)
{
    if (!left(r))
        return truncated(r, what, 1);
    *out = r->buf[r->pos++];
    return 0;
}

/* An unsigned LEB128 varint in its shortest form (get_varint). */
static int get_varint_slow(reader *r, const char *what, uint64_t *out)
{
    size_t start = r->pos;
    uint64_t x = 0;
    for (unsigned shift = 0;; shift += 7) {
        if (!left(r))
            return disco_error_set(DISCO_EPROTO,
                                   "value decode: truncated varint (%s) at offset %zu",
                                   what, start);
        uint8_t b = r->buf[r->pos++];
        /* The tenth byte holds bit 63 only (and cannot continue). */
        if (shift == 63 && b > 1)
            return disco_error_set(
                DISCO_EPROTO, "value decode: varint (%s) at offset %zu overflows 64 bits",
                what, start);
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (!b && shift)
                return disco_error_set(
                    DISCO_EPROTO,
                    "value decode: varint (%s) at offset %zu is not in "
                    "its shortest form",
                    what, start);
            *out = x;
            return 0;
        }
    }
}

/* Inline, for the one-byte varints of tags, counts and lengths below 128
 * that make up most messages; the rest takes the call. */
static inline int get_varint(reader *r, const char *what, uint64_t *out)
{
    if (left(r) && r->buf[r->pos] < 0x80) {
        *out = r->buf[r->pos++];
        return 0;
    }
    return get_varint_slow(r, what, out);
}

/*
 * A count of items of at least `unit` bytes each, checked against what is
 * left: this is what keeps a claimed length from ever sizing an allocation
 * beyond the input.
 */
static inline int get_count(reader *r, const char *what, size_t unit, size_t *out)
{
    *out = 0; /* set on every path: the callers' flow is then plain to see */
    size_t at = r->pos;
    uint64_t n;
    int rc = get_varint(r, what, &n);
    if (rc)
        return rc;
    if (n > left(r) / unit)
        return disco_error_set(DISCO_EPROTO,
                               "value decode: %s %llu at offset %zu needs more than the "
                               "%zu bytes left",
                               what, (unsigned long long)n, at, left(r));
    *out = (size_t)n;
    return 0;
}

static int get_i32(reader *r, const char *what, int32_t *out)
{
    size_t at = r->pos;
    uint64_t u;
    int rc = get_varint(r, what, &u);
    if (rc)
        return rc;
    int64_t x = unzigzag(u);
    if (x < INT32_MIN || x > INT32_MAX)
        return disco_error_set(
            DISCO_EPROTO, "value decode: %s %lld at offset %zu is out of 32-bit range",
            what, (long long)x, at);
    *out = (int32_t)x;
    return 0;
}

/* A heap copy of the next n bytes (checked by the caller) plus a NUL when
 * nul is set; empty payloads without NUL stay NULL. */
static inline int take_bytes(reader *r, size_t n, int nul, const char *what, void **out)
{
    *out = NULL;
    if (n || nul) {
        char *p = malloc(n + (nul ? 1 : 0));
        if (!p)
            return nomem(what, n);
        if (n)
            memcpy(p, r->buf + r->pos, n);
        disco__count_copy(n);
        if (nul)
            p[n] = '\0';
        *out = p;
    }
    r->pos += n;
    return 0;
}

/*
 * Makes room for item i of an array growing towards n items of `size` bytes:
 * returns the array (moved or not), or NULL when out of memory (then arr is
 * untouched). The capacity doubles with the items actually decoded, so a
 * list that claims many items but ends early costs at most about twice what
 * it delivered, however deeply such lists nest.
 */
static void *grow(void *arr, size_t *cap, size_t i, size_t n, size_t size)
{
    if (i < *cap)
        return arr;
    size_t want = *cap ? *cap * 2 : 8;
    if (want > n)
        want = n;
    if (want > SIZE_MAX / size)
        return NULL;
    void *p = realloc(arr, want * size);
    if (p)
        *cap = want;
    return p;
}

static int decode_error(reader *r, int depth, disco_error **out);
static int decode_value(reader *r, int depth, disco_value *out);

/* An error body at nesting depth `depth` (counting this error). */
static int decode_error(reader *r, int depth, disco_error **out)
{
    *out = NULL;
    size_t at = r->pos;
    if (depth > DISCO_VALUE_MAX_DEPTH)
        return malformed_at(at, "errors nested deeper than DISCO_VALUE_MAX_DEPTH");
    int32_t code;
    uint64_t pid;
    size_t len, n;
    int rc;
    if ((rc = get_i32(r, "error code", &code)) || (rc = get_varint(r, "error pid", &pid)))
        return rc;
    if (pid > INT32_MAX)
        return malformed_at(at, "error pid out of range");
    if ((rc = get_count(r, "error message length", 1, &len)))
        return rc;
    const char *msg = (const char *)r->buf + r->pos;
    if (len > INT_MAX || memchr(msg, '\0', len))
        return malformed_at(r->pos, "error message with a NUL byte or too long");
    r->pos += len;
    size_t count_at = r->pos;
    if ((rc = get_count(r, "nested error count", ERROR_BODY_MIN, &n)))
        return rc;
    if (!n) {
        if (!(*out = disco_error_new(code, "%.*s", (int)len, msg)))
            return nomem("an error message", len);
        disco__error_set_pid(*out, (int)pid);
        return 0;
    }
    if (code != DISCO_ECOMPOSITE)
        return malformed_at(count_at, "nested errors in an error that is not composite");
    disco_error **parts = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        disco_error **more = grow(parts, &cap, i, n, sizeof(*parts));
        if (more) {
            parts = more;
            rc = decode_error(r, depth + 1, &parts[i]);
        } else {
            rc = nomem("nested errors", n);
        }
        if (rc) {
            for (size_t j = 0; j < i; j++)
                disco_error_free(parts[j]);
            free(parts);
            return rc;
        }
    }
    /* disco_error_composite takes the parts, or frees them when it fails. */
    *out = disco_error_composite(parts, n);
    free(parts);
    if (!*out)
        return nomem("a composite error", n);
    disco__error_set_pid(*out, (int)pid);
    if (disco__error_set_message(*out, msg, len) != 0) {
        disco_error_free(*out);
        *out = NULL;
        return nomem("an error message", len);
    }
    return 0;
}

static int decode_list(reader *r, int depth, disco_value *out)
{
    size_t n;
    int rc = get_count(r, "list length", 1, &n);
    if (rc)
        return rc;
    bool inplace = depth == 1 && n && n <= r->nroom;
    disco_value *items = inplace ? r->room : NULL;
    size_t cap = inplace ? n : 0;
    for (size_t i = 0; i < n; i++) {
        disco_value *more = grow(items, &cap, i, n, sizeof(*items));
        if (more) {
            items = more;
            rc = decode_value(r, depth, &items[i]);
        } else {
            rc = nomem("list items", n);
        }
        if (rc) {
            for (size_t j = 0; j < i; j++)
                disco_value_free(&items[j]);
            if (!inplace)
                free(items);
            return rc;
        }
    }
    *out = disco_list(items, n);
    out->flags = inplace ? DISCO__VALUE_INPLACE : 0;
    return 0;
}

/* The data of a rendezvous value: allocated for its reader to fill in,
 * listed in r->rdv. */
static int rdv_take(reader *r, size_t at, size_t n, void **out)
{
    disco__rdv_in *in = r->rdv;
    disco__rdv_desc d = {.len = n};
    int rc;
    if (left(r) < 9)
        return truncated(r, "rendezvous descriptor", 9);
    memcpy(&d.addr, r->buf + r->pos, 8);
    r->pos += 8;
    if ((rc = get_u8(r, "rendezvous key length", &d.keylen)))
        return rc;
    if (d.keylen > DISCO__RDV_KEY_MAX)
        return malformed_at(r->pos - 1, "rendezvous key too long");
    if (left(r) < d.keylen)
        return truncated(r, "rendezvous key", d.keylen);
    memcpy(d.key, r->buf + r->pos, d.keylen);
    r->pos += d.keylen;
    if (n == 0 || n > in->max_len - in->total)
        return malformed_at(at, "rendezvous data above the limit (DISCO_MAX_FRAME) or empty");
    disco__rdv_read *reads = grow(in->reads, &in->cap, in->n, SIZE_MAX, sizeof(*reads));
    if (!reads)
        return nomem("rendezvous reads", in->n + 1);
    in->reads = reads;
    void *dst = in->pooled ? disco_mem_alloc(n) : malloc(n);
    if (!dst)
        return nomem("rendezvous data", n);
    in->reads[in->n++] = (disco__rdv_read){dst, d};
    in->total += n;
    *out = dst;
    return 0;
}

/* RDV: a BYTES or ARRAY whose data the receiver reads from the sender. */
static int decode_rdv(reader *r, size_t at, disco_value *v)
{
    if (!r->rdv)
        return malformed_at(at, "a rendezvous value where none is allowed");
    uint8_t tag = 0, elem = DISCO_ELEM_U8;
    uint64_t n;
    int rc;
    if ((rc = get_u8(r, "rendezvous inner tag", &tag)))
        return rc;
    if (tag != DISCO__TAG_BYTES && tag != DISCO__TAG_ARRAY)
        return malformed_at(r->pos - 1, "rendezvous of something else than bytes or an array");
    if (tag == DISCO__TAG_ARRAY && (rc = get_u8(r, "array element type", &elem)))
        return rc;
    size_t es = disco_elem_size((disco_elem)elem);
    if (!es)
        return malformed_at(r->pos - 1, "unknown array element type");
    if ((rc = get_varint(r, "rendezvous count", &n)))
        return rc;
    if (n > r->rdv->max_len / es)
        return malformed_at(at, "rendezvous data above the limit (DISCO_MAX_FRAME)");
    void *p = NULL;
    if ((rc = rdv_take(r, at, (size_t)n * es, &p)))
        return rc;
    *v = tag == DISCO__TAG_BYTES ? disco_bytes(p, (size_t)n)
                                 : disco_array((disco_elem)elem, p, (size_t)n);
    v->flags = r->rdv->pooled ? DISCO__VALUE_POOLED : 0;
    return 0;
}

/* One value inside `depth` enclosing containers. On failure *out is nil and
 * everything allocated on the way is freed. */
static int decode_value(reader *r, int depth, disco_value *out)
{
    /* Strings and bytes of a one-byte length, most arguments and results,
     * whole in what is left: copied at once (the checks below, shortened). */
    if (left(r) >= 2 && (r->buf[r->pos] == DISCO__TAG_BYTES ||
                         r->buf[r->pos] == DISCO__TAG_STRING) &&
        r->buf[r->pos + 1] < 0x80 && r->buf[r->pos + 1] <= left(r) - 2) {
        bool str = r->buf[r->pos] == DISCO__TAG_STRING;
        size_t len = r->buf[r->pos + 1];
        void *d;
        r->pos += 2;
        int rc = take_bytes(r, len, str, str ? "a string" : "bytes", &d);
        if (rc) {
            *out = disco_nil();
            return rc;
        }
        *out = str ? disco_strn(d, len) : disco_bytes(d, len);
        out->flags = DISCO_VALUE_OWNED;
        return 0;
    }
    *out = disco_nil();
    size_t at = r->pos;
    uint8_t tag = 0;
    int rc = get_u8(r, "value tag", &tag);
    if (rc)
        return rc;
    disco_value v;
    void *p;
    size_t n;
    switch (tag) {
    case DISCO__TAG_NIL: v = disco_nil(); break;
    case DISCO__TAG_FALSE:
    case DISCO__TAG_TRUE: v = disco_bool(tag == DISCO__TAG_TRUE); break;
    case DISCO__TAG_I64: {
        uint64_t u;
        if ((rc = get_varint(r, "i64", &u)))
            return rc;
        v = disco_i64(unzigzag(u));
        break;
    }
    case DISCO__TAG_F64: {
        double f;
        if (left(r) < 8)
            return truncated(r, "f64", 8);
        memcpy(&f, r->buf + r->pos, 8);
        r->pos += 8;
        v = disco_f64(f);
        break;
    }
    case DISCO__TAG_STRING:
        if ((rc = get_count(r, "string length", 1, &n)) ||
            (rc = take_bytes(r, n, 1, "a string", &p)))
            return rc;
        v = disco_strn(p, n);
        break;
    case DISCO__TAG_BYTES:
        if ((rc = get_count(r, "bytes length", 1, &n)) ||
            (rc = take_bytes(r, n, 0, "bytes", &p)))
            return rc;
        v = disco_bytes(p, n);
        break;
    case DISCO__TAG_ARRAY: {
        uint8_t elem = 0;
        if ((rc = get_u8(r, "array element type", &elem)))
            return rc;
        size_t es = disco_elem_size((disco_elem)elem);
        if (!es)
            return malformed_at(r->pos - 1, "unknown array element type");
        if ((rc = get_count(r, "array length", es, &n)) ||
            (rc = take_bytes(r, n * es, 0, "an array", &p)))
            return rc;
        v = disco_array((disco_elem)elem, p, n);
        break;
    }
    case DISCO__TAG_LIST:
        if (depth + 1 > DISCO_VALUE_MAX_DEPTH)
            return malformed_at(at, "lists nested deeper than DISCO_VALUE_MAX_DEPTH");
        if ((rc = decode_list(r, depth + 1, &v)))
            return rc;
        break;
    case DISCO__TAG_REF: {
        disco_ref ref;
        memset(&ref, 0, sizeof(ref));
        if ((rc = get_u8(r, "reference kind", &ref.kind)))
            return rc;
        bool carries = ref.kind == (DISCO_REF_FUTURE | CARRIES_BIT);
        if (carries && !disco__refs)
            return malformed_at(r->pos - 1, "a future carrying its value, where references "
                                            "are plain data");
        if (carries) {
            ref.kind = DISCO_REF_FUTURE;
            ref.flags = DISCO_REF_CARRIES;
        }
        if (ref.kind != DISCO_REF_FUTURE && ref.kind != DISCO_REF_CHANNEL)
            return malformed_at(r->pos - 1, "unknown reference kind");
        if ((rc = get_i32(r, "reference where", &ref.where)) ||
            (rc = get_i32(r, "reference whence", &ref.whence)) ||
            (rc = get_varint(r, "reference id", &ref.id)))
            return rc;
        disco_value carried = disco_nil();
        if (carries && depth + 1 > DISCO_VALUE_MAX_DEPTH)
            return malformed_at(at, "values nested deeper than DISCO_VALUE_MAX_DEPTH");
        if (carries && (rc = decode_value(r, depth + 1, &carried)))
            return rc;
        /* From here the value holds the reference (freed: dropped). */
        if (disco__refs)
            disco__refs->received(&ref, carries ? &carried : NULL);
        v = disco_ref_value(ref);
        break;
    }
    case DISCO__TAG_ERROR: {
        disco_error *e;
        if ((rc = decode_error(r, depth + 1, &e)))
            return rc;
        v = disco_error_value(e);
        break;
    }
    case DISCO__TAG_RDV:
        if ((rc = decode_rdv(r, at, &v)))
            return rc;
        break;
    default: return malformed_at(at, "unknown value tag");
    }
    v.flags |= DISCO_VALUE_OWNED;
    *out = v;
    return 0;
}

int disco__value_decode(const uint8_t *buf, size_t len, size_t *used, disco_value *out)
{
    return disco__value_decode_rdv(buf, len, used, out, NULL);
}

int disco__value_decode_rdv(const uint8_t *buf, size_t len, size_t *used, disco_value *out,
                            disco__rdv_in *rdv)
{
    return disco__value_decode_into(buf, len, used, out, rdv, NULL, 0);
}

int disco__value_decode_into(const uint8_t *buf, size_t len, size_t *used,
                             disco_value *out, disco__rdv_in *rdv, disco_value *room,
                             size_t nroom)
{
    if (used)
        *used = 0;
    if (!out || (!buf && len)) {
        if (out)
            *out = disco_nil();
        return disco_error_set(DISCO_EINVAL, "value decode: NULL %s",
                               out ? "buffer" : "output");
    }
    reader r = {buf, len, 0, rdv, room, nroom};
    size_t n0 = rdv ? rdv->n : 0, total0 = rdv ? rdv->total : 0;
    int rc = decode_value(&r, 0, out);
    if (rc && rdv) { /* the data went with the values freed */
        rdv->n = n0;
        rdv->total = total0;
    }
    if (!rc && used)
        *used = r.pos;
    return rc;
}

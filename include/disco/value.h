/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Values: the arguments and results of remote calls.
 *
 * A disco_value is a small transparent tagged union: nil, bool, int64,
 * float64, string, bytes, typed numeric array (u8/i32/i64/f32/f64), list of
 * values, remote reference (future or remote channel) and error. Read it by
 * switching on v.type and using the matching member (v.i, v.str.ptr, ...).
 *
 * Ownership -- the one rule to remember:
 *
 *   BORROWED  The constructors below (disco_str, disco_array, disco_list,
 *             ...) never copy: the value points at the caller's memory,
 *             which must stay valid and unchanged for as long as the value
 *             is used (for a remote call: until its future is ready).
 *             Such values have flags == 0 and disco_value_free does nothing
 *             to them.
 *
 *   OWNED     Values the library makes for the caller to keep (a decoded
 *             message, disco_value_copy) carry DISCO_VALUE_OWNED and own
 *             their memory: each string, bytes payload, array payload and
 *             list items array is its own heap block, an error is its own
 *             disco_error. disco_value_free releases it — and only it: a
 *             large bytes or array payload received by rendezvous is a
 *             disco_mem_alloc block (disco/mem.h), not a malloc one. To
 *             keep such a payload, keep the value. An owned list owns
 *             its items, each of which is itself marked owned. A function
 *             that lends out a value it keeps (such as a future's cached
 *             result) says so; the caller must not free such a value.
 *
 * A string is any sequence of bytes (ptr, len); it need not be UTF-8 and may
 * contain NUL bytes. Owned strings are always NUL terminated (ptr[len] ==
 * '\0'), so an owned string without embedded NULs can be used as a C string.
 *
 * References (futures and remote channels, see disco/rref.h) follow the
 * same rule. A borrowed DISCO_REF value (disco_future_ref,
 * disco_channel_ref) is plain data that lives as long as the handle it came
 * from. An owned one (a decoded argument or result, a disco_value_copy)
 * holds the reference in its process: the owner keeps the value alive until
 * every such value and handle, in every process, has been freed.
 */
#ifndef DISCO_VALUE_H
#define DISCO_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "disco/error.h"
#include "disco/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum disco_type {
    DISCO_NIL = 0,
    DISCO_BOOL,
    DISCO_I64,
    DISCO_F64,
    DISCO_STRING, /* v.str */
    DISCO_BYTES,  /* v.bytes */
    DISCO_ARRAY,  /* v.array: typed numeric array */
    DISCO_LIST,   /* v.list: heterogeneous list of values */
    DISCO_REF,    /* v.ref: future or remote channel */
    DISCO_ERROR   /* v.error */
} disco_type;

/* Element type of a numeric array. The numbers are also the wire encoding:
 * never renumber. */
typedef enum disco_elem {
    DISCO_ELEM_U8 = 0,
    DISCO_ELEM_I32,
    DISCO_ELEM_I64,
    DISCO_ELEM_F32,
    DISCO_ELEM_F64
} disco_elem;

/* What a remote reference names (numbers are wire bytes too). */
typedef enum disco_ref_kind {
    DISCO_REF_FUTURE = 1,
    DISCO_REF_CHANNEL = 2
} disco_ref_kind;

/* A remote reference (Julia's RRID plus where): created by process
 * `whence` with number `id`; a remote channel's items are stored on
 * process `where`, a future's call runs on `where` and its value comes
 * back to `whence`. */
typedef struct disco_ref {
    int32_t where;
    int32_t whence;
    uint64_t id;
    uint8_t kind;  /* disco_ref_kind */
    uint8_t flags; /* DISCO_REF_CARRIES or 0 */
} disco_ref;

/* ref.flags: a ready future whose value travels with the reference (as a
 * fetched Future does in Julia): the receiver needs no trip to anyone. */
#define DISCO_REF_CARRIES 0x1u

/* flags: the value owns its memory (see the ownership rule above). */
#define DISCO_VALUE_OWNED 0x1u

typedef struct disco_value {
    disco_type type;
    uint32_t flags;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *ptr;
            size_t len;
        } str;
        struct {
            const void *ptr;
            size_t len;
        } bytes;
        struct {
            disco_elem elem;
            const void *data; /* n elements, native layout */
            size_t n;
        } array;
        struct {
            const struct disco_value *items;
            size_t n;
        } list;
        disco_ref ref;
        const disco_error *error;
    };
} disco_value;

/* Size in bytes of one element of type e, or 0 for an unknown type. */
static inline size_t disco_elem_size(disco_elem e)
{
    switch (e) {
    case DISCO_ELEM_U8: return 1;
    case DISCO_ELEM_I32: return 4;
    case DISCO_ELEM_F32: return 4;
    case DISCO_ELEM_I64: return 8;
    case DISCO_ELEM_F64: return 8;
    }
    return 0;
}

/* A zeroed value of type t (internal helper of the constructors). */
static inline disco_value disco__value_of(disco_type t)
{
    disco_value v;
    memset(&v, 0, sizeof(v));
    v.type = t;
    return v;
}

/* --- Constructors: all borrow, none allocates. ------------------------- */

/* nil (Julia's `nothing`). */
static inline disco_value disco_nil(void) { return disco__value_of(DISCO_NIL); }

/* A bool. */
static inline disco_value disco_bool(bool b)
{
    disco_value v = disco__value_of(DISCO_BOOL);
    v.b = b;
    return v;
}

/* A 64-bit signed integer. */
static inline disco_value disco_i64(int64_t x)
{
    disco_value v = disco__value_of(DISCO_I64);
    v.i = x;
    return v;
}

/* A 64-bit float (NaN payloads and signed zeros travel bit for bit). */
static inline disco_value disco_f64(double x)
{
    disco_value v = disco__value_of(DISCO_F64);
    v.f = x;
    return v;
}

/* A string of len bytes at ptr (borrowed; ptr may be NULL when len is 0). */
static inline disco_value disco_strn(const char *ptr, size_t len)
{
    disco_value v = disco__value_of(DISCO_STRING);
    v.str.ptr = ptr;
    v.str.len = len;
    return v;
}

/* A string from a NUL-terminated C string (borrowed; NULL gives ""). */
static inline disco_value disco_str(const char *s)
{
    return disco_strn(s ? s : "", s ? strlen(s) : 0);
}

/* An opaque byte string of len bytes at ptr (borrowed). */
static inline disco_value disco_bytes(const void *ptr, size_t len)
{
    disco_value v = disco__value_of(DISCO_BYTES);
    v.bytes.ptr = ptr;
    v.bytes.len = len;
    return v;
}

/* A typed array of n elements of type elem at data (borrowed). */
static inline disco_value disco_array(disco_elem elem, const void *data, size_t n)
{
    disco_value v = disco__value_of(DISCO_ARRAY);
    v.array.elem = elem;
    v.array.data = data;
    v.array.n = n;
    return v;
}

/* A list of the n values at items (the array and the values it holds are
 * borrowed). */
static inline disco_value disco_list(const disco_value *items, size_t n)
{
    disco_value v = disco__value_of(DISCO_LIST);
    v.list.items = items;
    v.list.n = n;
    return v;
}

/* A remote reference (copied by value: it holds no memory). */
static inline disco_value disco_ref_value(disco_ref r)
{
    disco_value v = disco__value_of(DISCO_REF);
    v.ref = r;
    return v;
}

/* An error (borrowed: e must outlive the value). */
static inline disco_value disco_error_value(const disco_error *e)
{
    disco_value v = disco__value_of(DISCO_ERROR);
    v.error = e;
    return v;
}

/* --- Ownership. ------------------------------------------------------ */

/*
 * Frees what v owns and resets *v to nil. A value without DISCO_VALUE_OWNED
 * is only reset: its borrowed memory is left alone. For an owned list each
 * item is freed by the same rule. NULL is allowed.
 */
DISCO_API void disco_value_free(disco_value *v);

/* Payload bytes disco has copied in this process so far: the data of
 * strings, bytes and arrays as messages are encoded and decoded, and
 * messages put back together from pieces. A large bytes or array argument
 * of remotecall_fetch or remotecall_wait to a peer on a transport with
 * remote memory access (shm, ofi) travels by rendezvous instead: the callee
 * reads it straight from the caller's memory into the buffer it hands to
 * the function, and nothing is counted. Copies inside a transport (the shm
 * rings, the kernel's for TCP) are not counted either. */
DISCO_API uint64_t disco_bytes_copied(void);

/*
 * Deep-copies src into *dst, which then owns all its memory (free it with
 * disco_value_free). Works on borrowed and owned values alike; errors are
 * copied with disco_error_copy. Returns 0, DISCO_ENOMEM, or DISCO_EINVAL
 * when src is malformed (unknown type or element type, NULL pointer with a
 * non-zero length, lists nested deeper than DISCO_VALUE_MAX_DEPTH). On
 * failure *dst is nil and nothing is leaked.
 */
DISCO_API int disco_value_copy(disco_value *dst, const disco_value *src);

/* How deeply lists (and errors inside errors) may nest, counting the
 * outermost container as 1: the same limit applies to copy, encode and
 * decode, so a peer never receives a value it would refuse. */
#define DISCO_VALUE_MAX_DEPTH 64

#ifdef __cplusplus
}
#endif
#endif /* DISCO_VALUE_H */

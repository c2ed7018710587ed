/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The wire layer: values, their encoding, the frame header, function ids.
 *
 * Leaks on error paths are caught by LeakSanitizer in the ASan build; the
 * fuzz loops there are what proves "never crashes, never leaks".
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "disco.h"
#include "test_util.h"
#include "wire/wire.h"

/* ---- helpers ------------------------------------------------------------ */

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static int errors_equal(const disco_error *a, const disco_error *b)
{
    if (disco_error_code(a) != disco_error_code(b) ||
        strcmp(disco_error_message(a), disco_error_message(b)) ||
        disco_error_pid(a) != disco_error_pid(b) ||
        disco_error_count(a) != disco_error_count(b))
        return 0;
    for (size_t i = 0; i < disco_error_count(a); i++)
        if (!errors_equal(disco_error_nested(a, i), disco_error_nested(b, i)))
            return 0;
    return 1;
}

/* Structural equality; f64 compares bits so NaN payloads and -0.0 count. */
static int values_equal(const disco_value *a, const disco_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case DISCO_NIL: return 1;
    case DISCO_BOOL: return a->b == b->b;
    case DISCO_I64: return a->i == b->i;
    case DISCO_F64: return memcmp(&a->f, &b->f, sizeof(double)) == 0;
    case DISCO_STRING:
        return a->str.len == b->str.len &&
               (!a->str.len || !memcmp(a->str.ptr, b->str.ptr, a->str.len));
    case DISCO_BYTES:
        return a->bytes.len == b->bytes.len &&
               (!a->bytes.len || !memcmp(a->bytes.ptr, b->bytes.ptr, a->bytes.len));
    case DISCO_ARRAY:
        return a->array.elem == b->array.elem && a->array.n == b->array.n &&
               (!a->array.n || !memcmp(a->array.data, b->array.data,
                                       a->array.n * disco_elem_size(a->array.elem)));
    case DISCO_LIST:
        if (a->list.n != b->list.n)
            return 0;
        for (size_t i = 0; i < a->list.n; i++)
            if (!values_equal(&a->list.items[i], &b->list.items[i]))
                return 0;
        return 1;
    case DISCO_REF:
        return a->ref.where == b->ref.where && a->ref.whence == b->ref.whence &&
               a->ref.id == b->ref.id && a->ref.kind == b->ref.kind;
    case DISCO_ERROR: return errors_equal(a->error, b->error);
    }
    return 0;
}

/* Every part of a decoded value must be marked owned. */
static int all_owned(const disco_value *v)
{
    if (!(v->flags & DISCO_VALUE_OWNED))
        return 0;
    if (v->type == DISCO_LIST)
        for (size_t i = 0; i < v->list.n; i++)
            if (!all_owned(&v->list.items[i]))
                return 0;
    return 1;
}

/* Encodes v into a fresh heap buffer (sized by encoded_size) and checks
 * that encode writes exactly that many bytes. */
static uint8_t *encode_alloc(const disco_value *v, size_t *len)
{
    size_t n = disco__value_encoded_size(v);
    assert_true(n > 0);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    size_t used = 12345;
    assert_int_equal(disco__value_encode(v, buf, n, &used), 0);
    assert_int_equal(used, n);
    *len = n;
    return buf;
}

/* Encode, decode, compare; returns nothing, asserts everything. */
static void roundtrip(const disco_value *v)
{
    size_t len, used = 0;
    uint8_t *buf = encode_alloc(v, &len);
    disco_value out;
    assert_int_equal(disco__value_decode(buf, len, &used, &out), 0);
    assert_int_equal(used, len);
    assert_true(values_equal(v, &out));
    assert_true(all_owned(&out));
    disco_value_free(&out);
    assert_int_equal(out.type, DISCO_NIL);
    free(buf);
}

static void roundtrip_v(disco_value v) { roundtrip(&v); }

/* Decodes buf and expects failure with code; checks the promises made on
 * failure (out nil, used 0, last error set to the code). */
static void expect_decode_fail(const uint8_t *buf, size_t len, int code)
{
    disco_value out = disco_i64(77);
    size_t used = 99;
    disco_error_clear();
    int rc = disco__value_decode(buf, len, &used, &out);
    assert_int_equal(rc, code);
    assert_int_equal(out.type, DISCO_NIL);
    assert_int_equal(used, 0);
    assert_non_null(disco_last_error());
    assert_int_equal(disco_error_code(disco_last_error()), code);
}

/* Samples that cover every type; storage is static so they can borrow. */
enum { N_SAMPLES = 9 };
static disco_error *sample_err;

static disco_value sample(int which)
{
    static const char text[] = "hello, wire \xe2\x9c\x93";
    static const uint8_t raw[] = {0, 1, 2, 0xfe, 0xff};
    static const int32_t i32s[] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    static const double f64s[] = {0.5, -0.0, INFINITY, DBL_MAX};
    static const float f32s[] = {1.5f, -2.25f};
    static const int64_t i64s[] = {INT64_MIN, INT64_MAX};
    static disco_value inner[4], outer[10];
    switch (which) {
    case 0: return disco_i64(INT64_MIN);
    case 1: return disco_f64(-1.25e300);
    case 2: return disco_str(text);
    case 3: return disco_bytes(raw, sizeof(raw));
    case 4: return disco_array(DISCO_ELEM_I32, i32s, 5);
    case 5: {
        disco_ref r = {3, 1, 0x123456789abcull, DISCO_REF_CHANNEL, 0};
        return disco_ref_value(r);
    }
    case 6: return disco_error_value(sample_err);
    case 7: {
        inner[0] = disco_nil();
        inner[1] = disco_bool(true);
        inner[2] = disco_array(DISCO_ELEM_F32, f32s, 2);
        inner[3] = disco_list(NULL, 0);
        return disco_list(inner, 4);
    }
    default: {
        /* Everything at once, nested. */
        disco_ref r = {-5, 2, UINT64_MAX, DISCO_REF_FUTURE, 0};
        outer[0] = disco_bool(false);
        outer[1] = disco_i64(-300);
        outer[2] = disco_f64(NAN);
        outer[3] = disco_strn("a\0b", 3);
        outer[4] = disco_bytes(NULL, 0);
        outer[5] = disco_array(DISCO_ELEM_F64, f64s, 4);
        outer[6] = disco_array(DISCO_ELEM_I64, i64s, 2);
        outer[7] = disco_ref_value(r);
        outer[8] = disco_list(inner, 4);
        outer[9] = disco_error_value(sample_err);
        (void)sample(7); /* fills inner */
        return disco_list(outer, 10);
    }
    }
}

static int setup(void **state)
{
    (void)state;
    disco_error *parts[3] = {
        disco_error_new(DISCO_EIO, "disk on fire"),
        disco_error_new(DISCO_ETIMEDOUT, "slow"),
        NULL,
    };
    disco_error *deep[1] = {disco_error_new(DISCO_EINVAL, "deep")};
    parts[2] = disco_error_composite(deep, 1);
    sample_err = disco_error_composite(parts, 3);
    return sample_err ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    disco_error_free(sample_err);
    disco_error_clear();
    return 0;
}

/* ---- values --------------------------------------------------------------- */

static void test_constructors(void **state)
{
    (void)state;
    int32_t a[3] = {1, 2, 3};
    disco_value items[2] = {disco_nil(), disco_i64(5)};
    disco_value v = disco_nil();
    assert_int_equal(v.type, DISCO_NIL);
    assert_int_equal(v.flags, 0);
    v = disco_bool(true);
    assert_true(v.type == DISCO_BOOL && v.b);
    v = disco_i64(-7);
    assert_true(v.type == DISCO_I64 && v.i == -7);
    v = disco_f64(2.5);
    assert_true(v.type == DISCO_F64 && v.f == 2.5);
    v = disco_str("abc");
    assert_true(v.type == DISCO_STRING && v.str.len == 3 && !strcmp(v.str.ptr, "abc"));
    v = disco_str(NULL);
    assert_true(v.type == DISCO_STRING && v.str.len == 0 && v.str.ptr);
    v = disco_strn("xyz", 2);
    assert_true(v.str.len == 2);
    v = disco_bytes(a, sizeof(a));
    assert_true(v.type == DISCO_BYTES && v.bytes.ptr == (const void *)a &&
                v.bytes.len == 12);
    v = disco_array(DISCO_ELEM_I32, a, 3);
    assert_true(v.type == DISCO_ARRAY && v.array.elem == DISCO_ELEM_I32 &&
                v.array.n == 3 && v.array.data == (const void *)a);
    v = disco_list(items, 2);
    assert_true(v.type == DISCO_LIST && v.list.items == items && v.list.n == 2);
    disco_ref r = {2, 1, 42, DISCO_REF_FUTURE, 0};
    v = disco_ref_value(r);
    assert_true(v.type == DISCO_REF && v.ref.id == 42 && v.ref.where == 2 &&
                v.ref.whence == 1);
    v = disco_error_value(sample_err);
    assert_true(v.type == DISCO_ERROR && v.error == sample_err && v.flags == 0);
    assert_int_equal(disco_elem_size(DISCO_ELEM_U8), 1);
    assert_int_equal(disco_elem_size(DISCO_ELEM_I32), 4);
    assert_int_equal(disco_elem_size(DISCO_ELEM_I64), 8);
    assert_int_equal(disco_elem_size(DISCO_ELEM_F32), 4);
    assert_int_equal(disco_elem_size(DISCO_ELEM_F64), 8);
    assert_int_equal(disco_elem_size((disco_elem)99), 0);
}

static void test_free_borrowed_is_reset_only(void **state)
{
    (void)state;
    char text[] = "mine";
    disco_value items[1] = {disco_str(text)};
    disco_value v = disco_list(items, 1);
    disco_value_free(&v); /* would be a bad free under ASan if it freed */
    assert_int_equal(v.type, DISCO_NIL);
    assert_string_equal(text, "mine");
    assert_int_equal(items[0].type, DISCO_STRING);
    disco_value e = disco_error_value(sample_err);
    disco_value_free(&e);
    assert_int_equal(disco_error_count(sample_err), 3); /* still alive */
    disco_value_free(NULL);
}

static void test_copy(void **state)
{
    (void)state;
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value src = sample(s), dst;
        assert_int_equal(disco_value_copy(&dst, &src), 0);
        assert_true(values_equal(&src, &dst));
        assert_true(all_owned(&dst));
        /* A copy of an owned value is a new, independent owned value. */
        disco_value again;
        assert_int_equal(disco_value_copy(&again, &dst), 0);
        disco_value_free(&dst);
        assert_true(values_equal(&src, &again));
        disco_value_free(&again);
        /* In place (dst == src): a borrowed value becomes an owned one. */
        disco_value mine = sample(s);
        assert_int_equal(disco_value_copy(&mine, &mine), 0);
        assert_true(all_owned(&mine));
        assert_true(values_equal(&src, &mine));
        disco_value_free(&mine);
    }
    /* Owned strings are NUL terminated, even empty ones. */
    disco_value src = disco_strn("abcdef", 3), dst;
    assert_int_equal(disco_value_copy(&dst, &src), 0);
    assert_string_equal(dst.str.ptr, "abc");
    disco_value_free(&dst);
    src = disco_strn(NULL, 0);
    assert_int_equal(disco_value_copy(&dst, &src), 0);
    assert_non_null(dst.str.ptr);
    assert_string_equal(dst.str.ptr, "");
    disco_value_free(&dst);
    /* Malformed sources fail cleanly. */
    disco_value bad[] = {disco_strn(NULL, 3), disco_bytes(NULL, 1),
                         disco_array((disco_elem)9, "x", 1), disco_list(NULL, 2),
                         disco_error_value(NULL)};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dst = disco_i64(1);
        assert_int_equal(disco_value_copy(&dst, &bad[i]), DISCO_EINVAL);
        assert_int_equal(dst.type, DISCO_NIL);
    }
    /* A failure deep in a list frees what was copied before it. */
    disco_value items[3] = {disco_str("kept?"), disco_array(DISCO_ELEM_U8, "ab", 2),
                            disco_strn(NULL, 1)};
    src = disco_list(items, 3);
    assert_int_equal(disco_value_copy(&dst, &src), DISCO_EINVAL);
    assert_int_equal(dst.type, DISCO_NIL);
    assert_int_equal(disco_value_copy(NULL, &src), DISCO_EINVAL);
}

/* ---- encoding: exact bytes ----------------------------------------------- */

static void expect_bytes(disco_value v, const uint8_t *want, size_t n)
{
    uint8_t buf[64];
    size_t used;
    assert_int_equal(disco__value_encoded_size(&v), n);
    assert_int_equal(disco__value_encode(&v, buf, sizeof(buf), &used), 0);
    assert_int_equal(used, n);
    assert_memory_equal(buf, want, n);
}

/* These pin the format: a change here is a protocol change. */
static void test_golden_encodings(void **state)
{
    (void)state;
    expect_bytes(disco_nil(), (const uint8_t[]){0x00}, 1);
    expect_bytes(disco_bool(false), (const uint8_t[]){0x01}, 1);
    expect_bytes(disco_bool(true), (const uint8_t[]){0x02}, 1);
    expect_bytes(disco_i64(0), (const uint8_t[]){0x03, 0x00}, 2);
    expect_bytes(disco_i64(-1), (const uint8_t[]){0x03, 0x01}, 2);
    expect_bytes(disco_i64(1), (const uint8_t[]){0x03, 0x02}, 2);
    expect_bytes(disco_i64(300), (const uint8_t[]){0x03, 0xd8, 0x04}, 3);
    expect_bytes(disco_i64(INT64_MIN),
                 (const uint8_t[]){0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0x01},
                 11);
    expect_bytes(disco_f64(1.0),
                 (const uint8_t[]){0x04, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 9);
    expect_bytes(disco_str("hi"), (const uint8_t[]){0x05, 0x02, 'h', 'i'}, 4);
    expect_bytes(disco_bytes("", 0), (const uint8_t[]){0x06, 0x00}, 2);
    const int32_t a[2] = {1, -2};
    expect_bytes(disco_array(DISCO_ELEM_I32, a, 2),
                 (const uint8_t[]){0x07, 0x01, 0x02, 1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff},
                 11);
    disco_value items[2] = {disco_nil(), disco_bool(true)};
    expect_bytes(disco_list(items, 2), (const uint8_t[]){0x08, 0x02, 0x00, 0x02}, 4);
    disco_ref r = {2, -1, 200, DISCO_REF_FUTURE, 0};
    expect_bytes(disco_ref_value(r),
                 (const uint8_t[]){0x09, 0x01, 0x04, 0x01, 0xc8, 0x01}, 6);
    disco_error *e = disco_error_new(DISCO_EIO, "x");
    /* EIO = -5: zigzag 9; pid 0; "x"; no nested errors. */
    expect_bytes(disco_error_value(e),
                 (const uint8_t[]){0x0a, 0x09, 0x00, 0x01, 'x', 0x00}, 6);
    disco_error_free(e);
}

/* ---- round trips ------------------------------------------------------------- */

static void test_roundtrip_scalars(void **state)
{
    (void)state;
    roundtrip_v(disco_nil());
    roundtrip_v(disco_bool(false));
    roundtrip_v(disco_bool(true));
    const int64_t ints[] = {0, 1, -1, 63, 64, -64, -65, 127, 128, 1 << 20, -(1 << 20),
                            INT32_MAX, INT32_MIN, (int64_t)1 << 62, -((int64_t)1 << 62),
                            INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        disco_value v = disco_i64(ints[i]);
        roundtrip(&v);
    }
    const double fl[] = {0.0, -0.0, 1.0, -1.5, DBL_MIN, DBL_MAX, DBL_TRUE_MIN,
                         -DBL_TRUE_MIN, INFINITY, -INFINITY, NAN, -NAN, M_PI};
    for (size_t i = 0; i < sizeof(fl) / sizeof(fl[0]); i++) {
        disco_value v = disco_f64(fl[i]);
        roundtrip(&v); /* compares bits: -0.0 and NaN included */
    }
    /* A NaN with a payload keeps it. */
    uint64_t bits = 0x7ff8dead0000beefull;
    double nan_payload;
    memcpy(&nan_payload, &bits, 8);
    disco_value v = disco_f64(nan_payload), out;
    uint8_t buf[16];
    size_t used;
    assert_int_equal(disco__value_encode(&v, buf, sizeof(buf), &used), 0);
    assert_int_equal(disco__value_decode(buf, used, NULL, &out), 0);
    uint64_t back;
    memcpy(&back, &out.f, 8);
    assert_true(back == bits);
    assert_true(isnan(out.f));
}

static void test_roundtrip_strings_bytes_arrays(void **state)
{
    (void)state;
    /* Empty ones. */
    roundtrip_v(disco_str(""));
    roundtrip_v(disco_strn(NULL, 0));
    roundtrip_v(disco_bytes(NULL, 0));
    for (int e = DISCO_ELEM_U8; e <= DISCO_ELEM_F64; e++) {
        disco_value v = disco_array((disco_elem)e, NULL, 0);
        roundtrip(&v);
    }
    /* A decoded empty string is still a usable C string. */
    uint8_t empty[] = {DISCO__TAG_STRING, 0};
    disco_value out;
    assert_int_equal(disco__value_decode(empty, 2, NULL, &out), 0);
    assert_non_null(out.str.ptr);
    assert_string_equal(out.str.ptr, "");
    disco_value_free(&out);
    /* Embedded NUL, non-ASCII, and lengths around varint byte boundaries. */
    roundtrip_v(disco_strn("a\0b\0", 4));
    static char big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + 1);
    const size_t lens[] = {1, 127, 128, 129, 16383, 16384, sizeof(big)};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        disco_value s = disco_strn(big, lens[i]), b = disco_bytes(big, lens[i]);
        roundtrip(&s);
        roundtrip(&b);
    }
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    roundtrip_v(disco_bytes(all, 256));
    /* Arrays of every element type. */
    const uint8_t u8[] = {0, 1, 255};
    const int32_t i32[] = {INT32_MIN, 0, INT32_MAX};
    const int64_t i64[] = {INT64_MIN, 0, INT64_MAX};
    const float f32[] = {-0.0f, NAN, INFINITY};
    const double f64[] = {-0.0, NAN, -INFINITY};
    roundtrip_v(disco_array(DISCO_ELEM_U8, u8, 3));
    roundtrip_v(disco_array(DISCO_ELEM_I32, i32, 3));
    roundtrip_v(disco_array(DISCO_ELEM_I64, i64, 3));
    roundtrip_v(disco_array(DISCO_ELEM_F32, f32, 3));
    roundtrip_v(disco_array(DISCO_ELEM_F64, f64, 3));
    static double many[10000];
    for (size_t i = 0; i < 10000; i++)
        many[i] = (double)i / 3.0;
    roundtrip_v(disco_array(DISCO_ELEM_F64, many, 10000));
}

static void test_roundtrip_lists_refs_errors(void **state)
{
    (void)state;
    roundtrip_v(disco_list(NULL, 0));
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        roundtrip(&v);
    }
    /* Refs at the edges of their ranges. */
    disco_ref refs[] = {{0, 0, 0, DISCO_REF_FUTURE, 0},
                        {INT32_MAX, INT32_MIN, UINT64_MAX, DISCO_REF_CHANNEL, 0},
                        {INT32_MIN, INT32_MAX, 1, DISCO_REF_FUTURE, 0}};
    for (size_t i = 0; i < 3; i++) {
        disco_value v = disco_ref_value(refs[i]);
        roundtrip(&v);
    }
    /* Errors: plain, empty message, composite without parts, nested. */
    disco_error *plain = disco_error_new(DISCO_EIO, "failed: %d", 42);
    disco_error *blank = disco_error_new(DISCO_EINVAL, "%s", "");
    /* (NULL, 0) would trip a memcpy(dst, NULL, 0) in error.c under UBSan. */
    disco_error *no_parts[1] = {NULL};
    disco_error *comp0 = disco_error_composite(no_parts, 0);
    disco_value errs[3] = {disco_error_value(plain), disco_error_value(blank),
                           disco_error_value(comp0)};
    for (int i = 0; i < 3; i++)
        roundtrip(&errs[i]);
    disco_value in_list = disco_list(errs, 3);
    roundtrip(&in_list);
    /* What a decoded composite error looks like. */
    size_t len;
    disco_value v = disco_error_value(sample_err), out;
    uint8_t *buf = encode_alloc(&v, &len);
    assert_int_equal(disco__value_decode(buf, len, NULL, &out), 0);
    assert_int_equal(disco_error_code(out.error), DISCO_ECOMPOSITE);
    assert_int_equal(disco_error_count(out.error), 3);
    const disco_error *third = disco_error_nested(out.error, 2);
    assert_int_equal(disco_error_count(third), 1);
    assert_string_equal(disco_error_message(disco_error_nested(third, 0)), "deep");
    assert_string_equal(disco_error_message(disco_error_nested(out.error, 0)),
                        "disk on fire");
    disco_value_free(&out);
    free(buf);
    disco_error_free(plain);
    disco_error_free(blank);
    disco_error_free(comp0);
}

/* Decoded values are one block per part: a part can be moved out and kept. */
static void test_decoded_parts_are_independent(void **state)
{
    (void)state;
    disco_value v = sample(N_SAMPLES - 1), out;
    size_t len;
    uint8_t *buf = encode_alloc(&v, &len);
    /* Trailing bytes are not consumed. */
    uint8_t *more = malloc(len + 3);
    memcpy(more, buf, len);
    memset(more + len, 0xee, 3);
    size_t used;
    assert_int_equal(disco__value_decode(more, len + 3, &used, &out), 0);
    assert_int_equal(used, len);
    assert_true(values_equal(&v, &out));
    disco_value *items = (disco_value *)out.list.items;
    disco_value s = items[3], e = items[9];
    items[3] = disco_nil();
    items[9] = disco_nil();
    disco_value_free(&out);
    assert_int_equal(s.str.len, 3);
    assert_memory_equal(s.str.ptr, "a\0b", 4); /* with its NUL terminator */
    assert_int_equal(disco_error_count(e.error), 3);
    disco_value_free(&s);
    disco_value_free(&e);
    free(more);
    free(buf);
}

static void test_decode_into_room(void **state)
{
    (void)state;
    /* Every sample, with room for none to more than all of its items:
     * equal values, all owned, freed without a leak or a bad free (ASan). */
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        size_t len;
        uint8_t *buf = encode_alloc(&v, &len);
        for (size_t nroom = 0; nroom <= 12; nroom++) {
            /* A tight block: ASan sees any write past it. */
            disco_value *room = malloc((nroom ? nroom : 1) * sizeof(*room)), out;
            size_t used;
            assert_int_equal(disco__value_decode_into(buf, len, &used, &out, NULL, room, nroom),
                             0);
            assert_int_equal(used, len);
            assert_true(values_equal(&v, &out));
            assert_true(all_owned(&out));
            bool inplace = v.type == DISCO_LIST && v.list.n && v.list.n <= nroom;
            assert_int_equal(out.list.items == room, inplace);
            if (out.type == DISCO_LIST && out.list.n >= 4) {
                /* An item moved out outlives the list (closures, remote
                 * channels keep arguments so). */
                disco_value *items = (disco_value *)out.list.items, kept = items[3];
                items[3] = disco_nil();
                disco_value_free(&out);
                assert_true(values_equal(&v.list.items[3], &kept));
                disco_value_free(&kept);
            }
            disco_value_free(&out);
            free(room);
        }
        free(buf);
    }
}

/* ---- encoding failures ---------------------------------------------------- */

static void test_encode_buffer_too_small(void **state)
{
    (void)state;
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        size_t need = disco__value_encoded_size(&v);
        uint8_t *buf = malloc(need + 16);
        for (size_t cap = 0; cap < need; cap++) {
            memset(buf, 0xa5, need + 16);
            size_t used = 77;
            disco_error_clear();
            assert_int_equal(disco__value_encode(&v, buf, cap, &used), DISCO_EMSGSIZE);
            assert_int_equal(used, 0);
            assert_int_equal(disco_error_code(disco_last_error()), DISCO_EMSGSIZE);
            for (size_t i = cap; i < need + 16; i++)
                assert_int_equal(buf[i], 0xa5);
        }
        free(buf);
    }
    disco_value v = disco_nil();
    assert_int_equal(disco__value_encode(&v, NULL, 0, NULL), DISCO_EMSGSIZE);
    assert_int_equal(disco__value_encode(&v, NULL, 8, NULL), DISCO_EINVAL);
    assert_int_equal(disco__value_encode(NULL, (uint8_t[4]){0}, 4, NULL), DISCO_EINVAL);
}

/* The guess at a small message's size: too little room is no error. */
static void test_try_encode(void **state)
{
    (void)state;
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        size_t need = disco__value_encoded_size(&v);
        uint8_t *want = malloc(need), *buf = malloc(need + 16);
        size_t used;
        assert_int_equal(disco__value_encode(&v, want, need, &used), 0);
        for (size_t cap = 0; cap < need; cap++) {
            memset(buf, 0xa5, need + 16);
            used = 77;
            disco_error_clear();
            assert_int_equal(disco__value_try_encode_rdv(&v, buf, cap, &used, NULL),
                             DISCO__ENCODE_NO_ROOM);
            assert_int_equal(used, 0);
            assert_null(disco_last_error());
            for (size_t i = cap; i < need + 16; i++)
                assert_int_equal(buf[i], 0xa5);
        }
        assert_int_equal(disco__value_try_encode_rdv(&v, buf, need + 16, &used, NULL), 0);
        assert_int_equal(used, need);
        assert_memory_equal(buf, want, need);
        free(want);
        free(buf);
    }
    disco_value bad = {.type = DISCO_STRING, .str = {NULL, 3}};
    assert_int_equal(disco__value_try_encode_rdv(&bad, (uint8_t[64]){0}, 64, NULL, NULL),
                     DISCO_EINVAL);
}

static void expect_encode_invalid(disco_value v)
{
    static uint8_t buf[4096]; /* room enough that only v can be wrong */
    size_t used = 5;
    assert_int_equal(disco__value_encoded_size(&v), 0);
    assert_int_equal(disco__value_encode(&v, buf, sizeof(buf), &used), DISCO_EINVAL);
    assert_int_equal(used, 0);
    assert_int_equal(disco_error_code(disco_last_error()), DISCO_EINVAL);
}

static void test_encode_invalid(void **state)
{
    (void)state;
    disco_value bad_type = disco_nil();
    bad_type.type = (disco_type)42;
    expect_encode_invalid(bad_type);
    expect_encode_invalid(disco_strn(NULL, 1));
    expect_encode_invalid(disco_bytes(NULL, 1));
    expect_encode_invalid(disco_array((disco_elem)7, "abcd", 1));
    expect_encode_invalid(disco_array(DISCO_ELEM_I64, NULL, 1));
    expect_encode_invalid(disco_array(DISCO_ELEM_I64, "x", SIZE_MAX / 4));
    expect_encode_invalid(disco_list(NULL, 1));
    expect_encode_invalid(disco_error_value(NULL));
    disco_ref r = {1, 1, 1, 0, 0};
    expect_encode_invalid(disco_ref_value(r));
    r.kind = 3;
    expect_encode_invalid(disco_ref_value(r));
    /* Invalid deep inside a list. */
    disco_value items[2] = {disco_i64(1), disco_strn(NULL, 2)};
    expect_encode_invalid(disco_list(items, 2));
    /* A list that contains itself is refused by the depth limit, not a
     * stack overflow. */
    disco_value self[1];
    self[0] = disco_list(self, 1);
    expect_encode_invalid(self[0]);
    /* A string longer than memory overflows the size count. */
    disco_value huge = disco_strn("x", SIZE_MAX - 2);
    assert_int_equal(disco__value_encoded_size(&huge), 0);
    assert_int_equal(disco__value_encoded_size(NULL), 0);
}

/* ---- decoding failures ----------------------------------------------------- */

static void test_every_truncation_fails(void **state)
{
    (void)state;
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        size_t len;
        uint8_t *full = encode_alloc(&v, &len);
        for (size_t cut = 0; cut < len; cut++) {
            /* A copy of exactly cut bytes, so ASan sees any read past it. */
            uint8_t *p = malloc(cut ? cut : 1);
            memcpy(p, full, cut);
            expect_decode_fail(p, cut, DISCO_EPROTO);
            free(p);
        }
        free(full);
    }
    expect_decode_fail(NULL, 0, DISCO_EPROTO);
}

static void test_huge_claimed_lengths(void **state)
{
    (void)state;
    /* list of 2^60 items in a 10-byte buffer */
    uint8_t list[10] = {DISCO__TAG_LIST, 0x80, 0x80, 0x80, 0x80,
                        0x80, 0x80, 0x80, 0x80, 0x10};
    expect_decode_fail(list, sizeof(list), DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "list length"));
    /* string of 2^63 - 1 bytes */
    uint8_t str[11] = {DISCO__TAG_STRING, 0xff, 0xff, 0xff, 0xff, 0xff,
                       0xff, 0xff, 0xff, 0x7f, 'x'};
    expect_decode_fail(str, sizeof(str), DISCO_EPROTO);
    /* bytes: one more than is there */
    uint8_t bytes[5] = {DISCO__TAG_BYTES, 4, 1, 2, 3};
    expect_decode_fail(bytes, sizeof(bytes), DISCO_EPROTO);
    /* array whose count * 8 overflows 64 bits: 2^61 + 1 elements */
    uint8_t arr[13] = {DISCO__TAG_ARRAY, DISCO_ELEM_F64, 0x81, 0x80, 0x80, 0x80, 0x80,
                       0x80, 0x80, 0x80, 0x20, 0, 0};
    expect_decode_fail(arr, sizeof(arr), DISCO_EPROTO);
    /* array: 2 i32 claimed, 7 bytes there */
    uint8_t arr2[10] = {DISCO__TAG_ARRAY, DISCO_ELEM_I32, 2, 1, 2, 3, 4, 5, 6, 7};
    expect_decode_fail(arr2, sizeof(arr2), DISCO_EPROTO);
    /* error message of 2^40 bytes; error with 2^43 nested errors */
    uint8_t emsg[9] = {DISCO__TAG_ERROR, 0x09, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20};
    expect_decode_fail(emsg, sizeof(emsg), DISCO_EPROTO);
    uint8_t enest[12] = {DISCO__TAG_ERROR, 0xd3, 0x0f /* ECOMPOSITE */, 0x00, 0x00,
                         0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02};
    expect_decode_fail(enest, sizeof(enest), DISCO_EPROTO);
    /* nested lists each claiming as many items as there are bytes left:
     * fails, and with the doubling growth allocates little on the way. */
    uint8_t chain[2 * 60];
    for (size_t i = 0; i < 60; i++) {
        chain[2 * i] = DISCO__TAG_LIST;
        size_t rest = sizeof(chain) - 2 * i - 2;
        chain[2 * i + 1] = (uint8_t)(rest > 127 ? 127 : rest);
    }
    expect_decode_fail(chain, sizeof(chain), DISCO_EPROTO);
}

static void test_malformed_varints(void **state)
{
    (void)state;
    /* 11-byte varint */
    uint8_t longv[12] = {DISCO__TAG_I64, 0x80, 0x80, 0x80, 0x80, 0x80,
                         0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    expect_decode_fail(longv, sizeof(longv), DISCO_EPROTO);
    /* tenth byte with bits above 63 */
    uint8_t over[11] = {DISCO__TAG_I64, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff, 0xff, 0x02};
    expect_decode_fail(over, sizeof(over), DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "overflows"));
    /* largest value: fine */
    over[10] = 0x01;
    disco_value out;
    assert_int_equal(disco__value_decode(over, sizeof(over), NULL, &out), 0);
    assert_true(out.i == INT64_MIN);
    /* not the shortest form: 0 as two bytes, 1 as three */
    uint8_t pad0[3] = {DISCO__TAG_I64, 0x80, 0x00};
    expect_decode_fail(pad0, sizeof(pad0), DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "shortest"));
    uint8_t pad1[4] = {DISCO__TAG_STRING, 0x81, 0x80, 0x00};
    expect_decode_fail(pad1, sizeof(pad1), DISCO_EPROTO);
}

static void test_malformed_values(void **state)
{
    (void)state;
    uint8_t tag[1] = {0x0c};
    expect_decode_fail(tag, 1, DISCO_EPROTO);
    assert_non_null(
        strstr(disco_error_message(disco_last_error()), "unknown value tag at offset 0"));
    tag[0] = 0xff;
    expect_decode_fail(tag, 1, DISCO_EPROTO);
    /* the offset is reported for a bad tag inside a list */
    uint8_t in_list[4] = {DISCO__TAG_LIST, 2, DISCO__TAG_NIL, 0x77};
    expect_decode_fail(in_list, sizeof(in_list), DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "offset 3"));
    uint8_t elem[3] = {DISCO__TAG_ARRAY, 5, 0};
    expect_decode_fail(elem, sizeof(elem), DISCO_EPROTO);
    uint8_t kind0[5] = {DISCO__TAG_REF, 0, 2, 2, 1};
    expect_decode_fail(kind0, sizeof(kind0), DISCO_EPROTO);
    uint8_t kind3[5] = {DISCO__TAG_REF, 3, 2, 2, 1};
    expect_decode_fail(kind3, sizeof(kind3), DISCO_EPROTO);
    /* where = 2^31 (zigzag 2^32) is outside int32 */
    uint8_t where[9] = {DISCO__TAG_REF, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 0x01};
    expect_decode_fail(where, sizeof(where), DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "32-bit"));
    /* error code 2^31 */
    uint8_t code[9] = {DISCO__TAG_ERROR, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0};
    expect_decode_fail(code, sizeof(code), DISCO_EPROTO);
    /* error pid 2^31 */
    uint8_t pid[9] = {DISCO__TAG_ERROR, 0x09, 0x80, 0x80, 0x80, 0x80, 0x08, 0, 0};
    expect_decode_fail(pid, sizeof(pid), DISCO_EPROTO);
    /* a valid pid is accepted and kept */
    pid[6] = 0x07;
    disco_value out;
    assert_int_equal(disco__value_decode(pid, sizeof(pid), NULL, &out), 0);
    assert_int_equal(disco_error_code(out.error), DISCO_EIO);
    assert_int_equal(disco_error_pid(out.error), 7 << 28);
    disco_value_free(&out);
    /* message with a NUL byte */
    uint8_t nul[7] = {DISCO__TAG_ERROR, 0x09, 0, 2, 'a', 0, 0};
    expect_decode_fail(nul, sizeof(nul), DISCO_EPROTO);
    /* nested errors under a code that is not DISCO_ECOMPOSITE */
    uint8_t nested[10] = {DISCO__TAG_ERROR, 0x09, 0, 0, 1, 0x09, 0, 0, 0, 0};
    expect_decode_fail(nested, 9, DISCO_EPROTO);
    /* a composite whose second part is broken frees the first */
    uint8_t part2[15] = {DISCO__TAG_ERROR, 0xd3, 0x0f, 0, 0, 2,
                         0x09, 0, 1, 'a', 0, /* part 1 */
                         0x09, 0, 5, 'x' /* part 2: message cut short */};
    expect_decode_fail(part2, sizeof(part2), DISCO_EPROTO);
    /* a list whose third item is broken frees the first two */
    uint8_t items[9] = {DISCO__TAG_LIST, 3, DISCO__TAG_STRING, 1, 'x',
                        DISCO__TAG_BYTES, 1, 'y', 0x0c};
    expect_decode_fail(items, sizeof(items), DISCO_EPROTO);
    /* NULL arguments */
    assert_int_equal(disco__value_decode(NULL, 3, NULL, &out), DISCO_EINVAL);
    assert_int_equal(out.type, DISCO_NIL);
    assert_int_equal(disco__value_decode(tag, 1, NULL, NULL), DISCO_EINVAL);
}

/* `levels` nested lists, the innermost empty. */
static size_t nested_lists(uint8_t *buf, int levels)
{
    size_t n = 0;
    for (int i = 0; i < levels; i++) {
        buf[n++] = DISCO__TAG_LIST;
        buf[n++] = i + 1 < levels ? 1 : 0;
    }
    return n;
}

/* An error value whose composite chain is `levels` errors deep. */
static size_t nested_errors(uint8_t *buf, int levels)
{
    size_t n = 0;
    buf[n++] = DISCO__TAG_ERROR;
    for (int i = 0; i < levels; i++) {
        int last = i + 1 == levels;
        if (last) {
            buf[n++] = 0x09; /* EIO */
        } else {
            buf[n++] = 0xd3; /* ECOMPOSITE = -1002: zigzag 2003 */
            buf[n++] = 0x0f;
        }
        buf[n++] = 0;        /* pid */
        buf[n++] = 0;        /* message */
        buf[n++] = last ? 0 : 1;
    }
    return n;
}

static void test_depth_limit(void **state)
{
    (void)state;
    uint8_t buf[1024];
    disco_value out;
    size_t n = nested_lists(buf, DISCO_VALUE_MAX_DEPTH);
    assert_int_equal(disco__value_decode(buf, n, NULL, &out), 0);
    /* and it encodes back */
    assert_int_equal(disco__value_encoded_size(&out), n);
    disco_value_free(&out);
    n = nested_lists(buf, DISCO_VALUE_MAX_DEPTH + 1);
    expect_decode_fail(buf, n, DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "deeper"));
    /* errors nest under the same limit */
    n = nested_errors(buf, DISCO_VALUE_MAX_DEPTH);
    assert_int_equal(disco__value_decode(buf, n, NULL, &out), 0);
    assert_true(disco__value_encoded_size(&out) > 0); /* composites get a message */
    disco_value_free(&out);
    n = nested_errors(buf, DISCO_VALUE_MAX_DEPTH + 1);
    expect_decode_fail(buf, n, DISCO_EPROTO);
    /* an error in a list counts the list */
    buf[0] = DISCO__TAG_LIST;
    buf[1] = 1;
    n = nested_errors(buf + 2, DISCO_VALUE_MAX_DEPTH);
    expect_decode_fail(buf, n + 2, DISCO_EPROTO);
    /* the encoder refuses what the decoder would */
    static disco_value chain[DISCO_VALUE_MAX_DEPTH + 1];
    chain[DISCO_VALUE_MAX_DEPTH] = disco_list(NULL, 0);
    for (int i = DISCO_VALUE_MAX_DEPTH - 1; i >= 0; i--)
        chain[i] = disco_list(&chain[i + 1], 1);
    expect_encode_invalid(chain[0]);
    disco_value copy;
    assert_int_equal(disco_value_copy(&copy, &chain[0]), DISCO_EINVAL);
    roundtrip(&chain[1]); /* exactly the limit */
    disco_error *e = disco_error_new(DISCO_EIO, "bottom");
    for (int i = 1; i <= DISCO_VALUE_MAX_DEPTH; i++)
        e = disco_error_composite(&e, 1);
    expect_encode_invalid(disco_error_value(e)); /* 65 levels */
    disco_error_free(e);
}

/* ---- fuzzing ---------------------------------------------------------------- */

/* Whatever decodes must re-encode byte for byte to what was consumed (the
 * format has one encoding per value), and decode again to the same value. */
static void check_decoded(const uint8_t *in, size_t used, const disco_value *v)
{
    size_t len;
    uint8_t *again = encode_alloc(v, &len);
    assert_int_equal(len, used);
    assert_memory_equal(again, in, used);
    disco_value w;
    size_t used2;
    assert_int_equal(disco__value_decode(again, len, &used2, &w), 0);
    assert_int_equal(used2, len);
    assert_true(values_equal(v, &w));
    disco_value_free(&w);
    free(again);
}

static long fuzz_one(const uint8_t *buf, size_t len)
{
    disco_value v;
    size_t used;
    int rc = disco__value_decode(buf, len, &used, &v);
    if (rc) {
        assert_true(rc == DISCO_EPROTO || rc == DISCO_ENOMEM);
        assert_int_equal(v.type, DISCO_NIL);
        return 0;
    }
    assert_true(used >= 1 && used <= len);
    assert_true(all_owned(&v));
    check_decoded(buf, used, &v);
    /* Into room for a call's few arguments: the same value. */
    disco_value room[4], w;
    size_t used_room;
    assert_int_equal(disco__value_decode_into(buf, len, &used_room, &w, NULL, room, 4), 0);
    assert_int_equal(used_room, used);
    assert_true(values_equal(&v, &w));
    assert_true(all_owned(&w));
    disco_value_free(&w);
    disco_value_free(&v);
    return 1;
}

/* Random bytes, biased towards small numbers so that tags and lengths are
 * often plausible and the decoder gets past the first byte. */
static uint8_t fuzz_byte(void)
{
    uint64_t r = rnd();
    switch (r & 3) {
    case 0: return (uint8_t)((r >> 8) % 12);
    case 1: return (uint8_t)((r >> 8) % 4);
    default: return (uint8_t)(r >> 8);
    }
}

static void test_fuzz_random_buffers(void **state)
{
    (void)state;
    rng_state = 0x1234567887654321ull;
    long iters = test_scaled(200000), ok = 0;
    uint8_t *buf = malloc(128);
    for (long it = 0; it < iters; it++) {
        size_t len = (size_t)(rnd() % 128);
        for (size_t i = 0; i < len; i++)
            buf[i] = fuzz_byte();
        /* Decode from the end of the block so ASan catches overreads. */
        uint8_t *p = malloc(len ? len : 1);
        memcpy(p, buf, len);
        ok += fuzz_one(p, len);
        free(p);
    }
    free(buf);
    /* The bias must make a fair share decode, or the loop tests little. */
    assert_true(ok > iters / 20);
    disco_error_clear();
}

static void test_fuzz_mutations(void **state)
{
    (void)state;
    rng_state = 0xfeedfacecafebeefull;
    uint8_t *enc[N_SAMPLES];
    size_t enc_len[N_SAMPLES];
    for (int s = 0; s < N_SAMPLES; s++) {
        disco_value v = sample(s);
        enc[s] = encode_alloc(&v, &enc_len[s]);
    }
    long iters = test_scaled(200000), ok = 0;
    for (long it = 0; it < iters; it++) {
        int s = (int)(rnd() % N_SAMPLES);
        size_t len = enc_len[s];
        uint8_t *p = malloc(len + 8);
        memcpy(p, enc[s], len);
        int muts = 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            size_t at = (size_t)(rnd() % len);
            switch (rnd() % 5) {
            case 0: p[at] ^= (uint8_t)(1u << (rnd() % 8)); break; /* bit flip */
            case 1: p[at] = fuzz_byte(); break;                    /* new byte */
            case 2: p[at] = (uint8_t)(p[at] + 1); break;           /* off by one */
            case 3: /* insert a byte */
                memmove(p + at + 1, p + at, len - at);
                p[at] = fuzz_byte();
                len++;
                break;
            default: /* delete a byte */
                if (len > 1) {
                    memmove(p + at, p + at + 1, len - at - 1);
                    len--;
                }
                break;
            }
        }
        /* Tight copy so any read past the end is an ASan report. */
        uint8_t *q = malloc(len);
        memcpy(q, p, len);
        ok += fuzz_one(q, len);
        free(q);
        free(p);
    }
    for (int s = 0; s < N_SAMPLES; s++)
        free(enc[s]);
    assert_true(ok > 0);
    disco_error_clear();
}

/* ---- frame header ----------------------------------------------------------- */

static void test_frame_roundtrip(void **state)
{
    (void)state;
    disco__frame_header h = {DISCO__FRAME_CALL_FETCH, 0, 1234, 7, 0x0102030405060708ull,
                             0xa1a2a3a4a5a6a7a8ull}, back;
    uint8_t buf[DISCO__FRAME_HEADER_SIZE];
    assert_int_equal(disco__frame_header_encode(&h, buf), 0);
    const uint8_t want[DISCO__FRAME_HEADER_SIZE] = {
        'D', 'S', 'C', '1', 2, 0, 0, 0,           /* magic, kind, flags, reserved */
        0xd2, 0x04, 0, 0, 7, 0, 0, 0,             /* payload_len, reply_to */
        8, 7, 6, 5, 4, 3, 2, 1,                   /* call_id */
        0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1 /* function_id */
    };
    assert_memory_equal(buf, want, sizeof(want));
    memset(&back, 0xff, sizeof(back));
    assert_int_equal(disco__frame_header_decode(buf, sizeof(buf), 1 << 20, &back), 0);
    assert_int_equal(back.kind, h.kind);
    assert_int_equal(back.flags, 0);
    assert_int_equal(back.payload_len, 1234);
    assert_int_equal(back.reply_to, 7);
    assert_true(back.call_id == h.call_id);
    assert_true(back.function_id == h.function_id);
    /* every kind, extreme fields, payload exactly at the limit */
    for (int k = 1; k < DISCO__FRAME_KIND_END; k++) {
        disco__frame_header x = {(uint8_t)k, 0, UINT32_MAX, UINT32_MAX,
                                 UINT64_MAX, UINT64_MAX};
        assert_int_equal(disco__frame_header_encode(&x, buf), 0);
        assert_int_equal(disco__frame_header_decode(buf, sizeof(buf), UINT32_MAX, &back),
                         0);
        assert_memory_equal(&back.call_id, &x.call_id, 8);
        assert_true(back.kind == k && back.payload_len == UINT32_MAX &&
                    back.reply_to == UINT32_MAX && back.function_id == UINT64_MAX);
        assert_string_not_equal(disco__frame_kind_name(k), "UNKNOWN");
    }
    assert_string_equal(disco__frame_kind_name(DISCO__FRAME_RESULT), "RESULT");
    assert_string_equal(disco__frame_kind_name(0), "UNKNOWN");
    assert_string_equal(disco__frame_kind_name(DISCO__FRAME_KIND_END), "UNKNOWN");
}

static void expect_frame_fail(const uint8_t *buf, size_t len, uint32_t max, int code,
                              const char *says)
{
    disco__frame_header h;
    memset(&h, 0x5a, sizeof(h));
    disco__frame_header untouched = h;
    disco_error_clear();
    assert_int_equal(disco__frame_header_decode(buf, len, max, &h), code);
    assert_memory_equal(&h, &untouched, sizeof(h));
    assert_non_null(strstr(disco_error_message(disco_last_error()), says));
}

static void test_frame_errors(void **state)
{
    (void)state;
    disco__frame_header h = {DISCO__FRAME_RESULT, 0, 100, 1, 2, 0};
    uint8_t good[DISCO__FRAME_HEADER_SIZE], b[DISCO__FRAME_HEADER_SIZE];
    assert_int_equal(disco__frame_header_encode(&h, good), 0);
    for (size_t len = 0; len < DISCO__FRAME_HEADER_SIZE; len++)
        expect_frame_fail(good, len, 1000, DISCO_EPROTO, "truncated");
    memcpy(b, good, sizeof(b));
    b[3] = '2';
    expect_frame_fail(b, sizeof(b), 1000, DISCO_EPROTO, "magic");
    expect_frame_fail(good, sizeof(good), 99, DISCO_EMSGSIZE, "exceeds");
    disco__frame_header ok;
    assert_int_equal(disco__frame_header_decode(good, sizeof(good), 100, &ok), 0);
    for (int bit = 0; bit < 16; bit++) {
        memcpy(b, good, sizeof(b));
        b[6 + bit / 8] = (uint8_t)(1u << (bit % 8));
        expect_frame_fail(b, sizeof(b), 1000, DISCO_EPROTO, "reserved");
    }
    const uint8_t kinds[] = {0, DISCO__FRAME_KIND_END, 100, 255};
    for (size_t i = 0; i < sizeof(kinds); i++) {
        memcpy(b, good, sizeof(b));
        b[4] = kinds[i];
        expect_frame_fail(b, sizeof(b), 1000, DISCO_EPROTO, "kind");
    }
    memcpy(b, good, sizeof(b));
    b[5] = 0x80;
    expect_frame_fail(b, sizeof(b), 1000, DISCO_EPROTO, "flags");
    /* bad magic wins over everything else */
    memset(b, 0xff, sizeof(b));
    expect_frame_fail(b, sizeof(b), 0, DISCO_EPROTO, "magic");
    /* the encoder refuses what the decoder would */
    h.kind = 0;
    assert_int_equal(disco__frame_header_encode(&h, b), DISCO_EINVAL);
    h.kind = DISCO__FRAME_KIND_END;
    assert_int_equal(disco__frame_header_encode(&h, b), DISCO_EINVAL);
    h.kind = DISCO__FRAME_CALL;
    h.flags = 0x02;
    assert_int_equal(disco__frame_header_encode(&h, b), DISCO_EINVAL);
    /* The batch flag is known: it travels. */
    h.flags = DISCO__FRAME_BATCH;
    assert_int_equal(disco__frame_header_encode(&h, b), 0);
    assert_int_equal(disco__frame_header_decode(b, sizeof(b), UINT32_MAX, &ok), 0);
    assert_int_equal(ok.flags, DISCO__FRAME_BATCH);
    assert_int_equal(disco__frame_header_encode(NULL, b), DISCO_EINVAL);
    assert_int_equal(disco__frame_header_decode(NULL, 0, 10, &ok), DISCO_EPROTO);
    assert_int_equal(disco__frame_header_decode(good, sizeof(good), 1000, NULL),
                     DISCO_EINVAL);
}

static void test_frame_fuzz(void **state)
{
    (void)state;
    rng_state = 0x0badc0ffee0ddf00ull;
    long iters = test_scaled(100000), ok = 0;
    uint8_t buf[DISCO__FRAME_HEADER_SIZE];
    disco__frame_header h = {DISCO__FRAME_CALL, 0, 10, 1, 2, 3};
    for (long it = 0; it < iters; it++) {
        assert_int_equal(disco__frame_header_encode(&h, buf), 0);
        buf[rnd() % sizeof(buf)] ^= (uint8_t)(1u << (rnd() % 8));
        disco__frame_header out;
        int rc = disco__frame_header_decode(buf, sizeof(buf), 1 << 16, &out);
        assert_true(rc == 0 || rc == DISCO_EPROTO || rc == DISCO_EMSGSIZE);
        if (!rc) {
            uint8_t again[DISCO__FRAME_HEADER_SIZE];
            assert_int_equal(disco__frame_header_encode(&out, again), 0);
            assert_memory_equal(again, buf, sizeof(buf));
            ok++;
        }
    }
    assert_true(ok > 0);
    disco_error_clear();
}

/* ---- function ids ------------------------------------------------------------ */

/* ---- rendezvous ------------------------------------------------------------ */

/* A stand-in registration: the address as is, a fixed key; counts calls. */
static int exposed;
static int fake_expose(void *ctx, const void *ptr, size_t len, disco__rdv_desc *d)
{
    (void)ctx;
    exposed++;
    d->addr = (uint64_t)(uintptr_t)ptr;
    d->len = len;
    d->keylen = 3;
    memcpy(d->key, "key", 3);
    return 0;
}

/* Large runs go as descriptors, small ones inline; the decoder lists the
 * reads and allocates their destinations; "reading" them gives the value
 * back. Nothing of the large data is copied by the codec. */
static void test_rdv_roundtrip(void **state)
{
    (void)state;
    static uint8_t big[100000];
    static double arr[5000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < 5000; i++)
        arr[i] = (double)i / 3;
    disco_value items[3] = {disco_bytes(big, sizeof(big)), disco_bytes("small", 5),
                            disco_array(DISCO_ELEM_F64, arr, 5000)};
    disco_value v = disco_list(items, 3);
    disco__rdv_out out = {.min = 4096, .expose = fake_expose};
    size_t size = disco__value_encoded_size_rdv(&v, &out);
    assert_true(size > 0 && size < 400);
    uint8_t buf[400];
    size_t used;
    exposed = 0;
    uint64_t copied = disco_bytes_copied();
    assert_int_equal(disco__value_encode_rdv(&v, buf, size, &used, &out), 0);
    assert_int_equal(exposed, 2);
    assert_true(used <= size);
    assert_int_equal(disco_bytes_copied() - copied, 5); /* "small" only */

    /* Without rendezvous allowed, the decoder refuses. */
    disco_value got;
    assert_int_equal(disco__value_decode(buf, used, NULL, &got), DISCO_EPROTO);
    disco__rdv_in in = {.max_len = 1 << 20};
    copied = disco_bytes_copied();
    assert_int_equal(disco__value_decode_rdv(buf, used, NULL, &got, &in), 0);
    assert_int_equal(disco_bytes_copied() - copied, 5);
    assert_int_equal(in.n, 2);
    assert_int_equal(in.total, sizeof(big) + sizeof(arr));
    for (size_t i = 0; i < in.n; i++) {
        assert_int_equal(in.reads[i].d.keylen, 3);
        assert_memory_equal(in.reads[i].d.key, "key", 3);
        memcpy(in.reads[i].dst, (void *)(uintptr_t)in.reads[i].d.addr, in.reads[i].d.len);
    }
    assert_true(values_equal(&got, &v));
    assert_ptr_equal(in.reads[0].dst, got.list.items[0].bytes.ptr);
    disco_value_free(&got);
    free(in.reads);
}

/* Descriptors that claim too much, or are cut short, fail cleanly and
 * leave nothing listed. */
static void test_rdv_limits(void **state)
{
    (void)state;
    static uint8_t big[10000];
    disco_value items[2] = {disco_bytes(big, sizeof(big)), disco_bytes(big, sizeof(big))};
    disco_value v = disco_list(items, 2);
    disco__rdv_out out = {.min = 1, .expose = fake_expose};
    uint8_t buf[400];
    size_t used;
    assert_int_equal(disco__value_encode_rdv(&v, buf, sizeof(buf), &used, &out), 0);
    disco_value got;
    disco__rdv_in in = {.max_len = 15000}; /* one fits, not both */
    assert_int_equal(disco__value_decode_rdv(buf, used, NULL, &got, &in), DISCO_EPROTO);
    assert_int_equal(in.n, 0);
    assert_int_equal(in.total, 0);
    in.max_len = 1 << 20;
    for (size_t cut = 0; cut < used; cut++) {
        assert_int_not_equal(disco__value_decode_rdv(buf, cut, NULL, &got, &in), 0);
        assert_int_equal(in.n, 0);
    }
    free(in.reads);
}

static void test_function_id_is_stable(void **state)
{
    (void)state;
    /* FNV-1a 64 reference vectors, then names the project uses. A failure
     * here means processes of different builds would not understand each
     * other: do not "fix" the expected values. */
    assert_true(disco__function_id("") == 0xcbf29ce484222325ull);
    assert_true(disco__function_id("a") == 0xaf63dc4c8601ec8cull);
    assert_true(disco__function_id("foobar") == 0x85944171f73967e8ull);
    assert_true(disco__function_id("disco.echo") == 0x502cd35c5063ddf4ull);
    assert_true(disco__function_id("sum") == 0x82719e195d0fc4a8ull);
    assert_true(disco__function_id("sum") != disco__function_id("Sum"));
}

enum { COPY_THREADS = 200, COPY_ROUNDS = 50 }; /* more threads than slots */
static pthread_barrier_t all_in;

/* Encodes a 1000-byte bytes value COPY_ROUNDS times: 1000 bytes copied
 * each. With `together`, between two barriers of all the threads. */
static void *encode_copies(void *together)
{
    static uint8_t data[1000];
    disco_value v = disco_bytes(data, sizeof(data));
    uint8_t buf[1100];
    size_t used;
    if (together)
        pthread_barrier_wait(&all_in);
    for (int i = 0; i < COPY_ROUNDS; i++)
        if (disco__value_encode(&v, buf, sizeof(buf), &used) != 0)
            return (void *)1;
    if (together) /* every slot taken at once: the last threads share one */
        pthread_barrier_wait(&all_in);
    return NULL;
}

/* The copy count is kept per thread (src/wire/copied.c): the total holds
 * every thread's copies, those of threads that exited, those of more
 * threads at once than there are slots, and those of threads that took
 * over an exited thread's slot. */
static void test_bytes_copied_over_threads(void **state)
{
    (void)state;
    uint64_t before = disco_bytes_copied();
    pthread_t t[COPY_THREADS];
    assert_int_equal(pthread_barrier_init(&all_in, NULL, COPY_THREADS), 0);
    for (int pass = 0; pass < 2; pass++) { /* the second reuses the slots */
        for (int i = 0; i < COPY_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, encode_copies, &all_in), 0);
        for (int i = 0; i < COPY_THREADS; i++) {
            void *failed;
            assert_int_equal(pthread_join(t[i], &failed), 0);
            assert_null(failed);
        }
    }
    pthread_barrier_destroy(&all_in);
    assert_null(encode_copies(NULL)); /* this thread too */
    assert_int_equal(disco_bytes_copied() - before, (2 * COPY_THREADS + 1) * COPY_ROUNDS * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructors),
        cmocka_unit_test(test_free_borrowed_is_reset_only),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_golden_encodings),
        cmocka_unit_test(test_roundtrip_scalars),
        cmocka_unit_test(test_roundtrip_strings_bytes_arrays),
        cmocka_unit_test(test_roundtrip_lists_refs_errors),
        cmocka_unit_test(test_decoded_parts_are_independent),
        cmocka_unit_test(test_encode_buffer_too_small),
        cmocka_unit_test(test_try_encode),
        cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_huge_claimed_lengths),
        cmocka_unit_test(test_malformed_varints),
        cmocka_unit_test(test_malformed_values),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_fuzz_random_buffers),
        cmocka_unit_test(test_fuzz_mutations),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_frame_fuzz),
        cmocka_unit_test(test_function_id_is_stable),
        cmocka_unit_test(test_rdv_roundtrip),
        cmocka_unit_test(test_rdv_limits),
        cmocka_unit_test(test_decode_into_room),
        cmocka_unit_test(test_bytes_copied_over_threads),
    };
    return cmocka_run_group_tests_name("wire", tests, setup, teardown);
}

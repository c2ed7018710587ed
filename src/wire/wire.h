/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The wire layer: how values and message headers look as bytes.
 *
 * Everything on the wire is little-endian. A message is a fixed 32-byte
 * frame header (frame.c) followed by payload_len bytes of payload, which the
 * layers above fill with encoded values (value_codec.c).
 *
 * Value encoding: one tag byte, then
 *
 *   NIL, FALSE, TRUE   nothing
 *   I64                zigzag varint
 *   F64                8 bytes, the IEEE-754 bits
 *   STRING, BYTES      varint length, the bytes
 *   ARRAY              element-type byte, varint count, count*size bytes
 *   LIST               varint count, count encoded values
 *   REF                kind byte, zigzag where, zigzag whence, varint id
 *   ERROR              an error body:
 *                        zigzag code, varint pid, varint length + message
 *                        bytes (no NUL), varint count + count error bodies
 *   RDV                a BYTES or ARRAY whose data stays with the sender
 *                      (rendezvous): inner tag byte, element-type byte
 *                      (ARRAY only), varint count, u64 address, u8 key
 *                      length + key bytes; the receiver reads the data by
 *                      RMA (see disco__rdv_in). Only where the frame's
 *                      receiver allows it.
 *
 * A varint is unsigned LEB128 (7 bits per byte, low group first) in its
 * shortest form. The decoder accepts only what the encoder produces (shortest
 * varints, 32-bit fields in range, known tags and kinds) and checks every
 * length against the bytes that are left before it allocates anything.
 *
 * Status codes: malformed input is DISCO_EPROTO, a value the encoder cannot
 * represent is DISCO_EINVAL, a buffer that is too small or a frame above the
 * limit is DISCO_EMSGSIZE; each sets the last error with the detail.
 */
#ifndef DISCO_WIRE_WIRE_H
#define DISCO_WIRE_WIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/compiler.h"
#include "disco/value.h"

/* The codec copies numeric data as is: it needs a little-endian host. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "disco's wire layer assumes a little-endian host"
#endif

/* ---- values (value_codec.c) ------------------------------------------ */

/* Wire tags. These numbers are the protocol: never renumber. */
enum disco__tag {
    DISCO__TAG_NIL = 0x00,
    DISCO__TAG_FALSE = 0x01,
    DISCO__TAG_TRUE = 0x02,
    DISCO__TAG_I64 = 0x03,
    DISCO__TAG_F64 = 0x04,
    DISCO__TAG_STRING = 0x05,
    DISCO__TAG_BYTES = 0x06,
    DISCO__TAG_ARRAY = 0x07,
    DISCO__TAG_LIST = 0x08,
    DISCO__TAG_REF = 0x09,
    DISCO__TAG_ERROR = 0x0a,
    DISCO__TAG_RDV = 0x0b,
};

/* ---- rendezvous: large data by reference (the encoder's and decoder's
 * side; src/core/rdv.c does the registering and reading) ---------------- */

#define DISCO__RDV_KEY_MAX 64

/* Where a run of bytes lies in the sender, and the key to read it. */
typedef struct disco__rdv_desc {
    uint64_t addr;
    uint64_t len;
    uint8_t keylen;
    uint8_t key[DISCO__RDV_KEY_MAX];
} disco__rdv_desc;

/* Encoding: data runs (bytes, array data) of at least min bytes go as RDV
 * descriptors — only those wants accepts, when it is set; expose registers
 * one (0, or a status that fails the encoding). Counting sizes calls wants
 * but not expose. */
typedef struct disco__rdv_out {
    size_t min;
    bool (*wants)(void *ctx, const void *ptr, size_t len);
    int (*expose)(void *ctx, const void *ptr, size_t len, disco__rdv_desc *d);
    void *ctx;
} disco__rdv_out;

/* Decoding: RDV values become values whose data is allocated but not yet
 * there; each is listed here for the caller to read. A run is at most
 * max_len bytes. */
typedef struct disco__rdv_read {
    void *dst;
    disco__rdv_desc d;
} disco__rdv_read;

typedef struct disco__rdv_in {
    size_t max_len;
    /* Destinations from disco_mem_alloc (registered, pages reused: no
     * page faults, no registration per message), marked
     * DISCO__VALUE_POOLED so that disco_value_free gives them back. */
    bool pooled;
    disco__rdv_read *reads; /* malloc'd; the caller frees */
    size_t n, cap;
    size_t total; /* bytes of all runs so far: at most max_len too */
} disco__rdv_in;

/* A value whose data (bytes, array) is a disco_mem_alloc block. */
#define DISCO__VALUE_POOLED 0x2u

/* An owned list whose items array is not a heap block of its own (see
 * disco__value_decode_into): disco_value_free frees the items, not the
 * array. */
#define DISCO__VALUE_INPLACE 0x4u

/* Counts n payload bytes (strings, bytes, array data, reassembled frames)
 * that this process's disco copied (disco_bytes_copied in disco/value.h).
 * Inline: every encode and decode of data counts. The calling thread's own
 * counter once it has one (src/wire/copied.c); only that thread writes it. */
extern DISCO__TLS _Atomic uint64_t *disco__copied_here;
void disco__count_copy_slow(size_t n);

static inline void disco__count_copy(size_t n)
{
    _Atomic uint64_t *c = disco__copied_here;
    if (c)
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
    else
        disco__count_copy_slow(n);
}

/* Bytes that encoding v takes, or 0 when v cannot be encoded (malformed, too
 * deep, or larger than SIZE_MAX); then the last error says why. */
size_t disco__value_encoded_size(const disco_value *v);

/*
 * Encodes v into buf[0..cap). On success returns 0 and stores the number of
 * bytes written in *used (used may be NULL). Fails with DISCO_EMSGSIZE when
 * cap is too small (nothing is written at or past buf + cap) or
 * DISCO_EINVAL when v is malformed; then *used is 0 and the contents of
 * buf are unspecified.
 */
int disco__value_encode(const disco_value *v, uint8_t *buf, size_t cap, size_t *used);

/*
 * Decodes one value from buf[0..len). On success returns 0, stores the
 * bytes consumed in *used (may be NULL; trailing bytes are left for the
 * caller) and an owned value in *out (free it with disco_value_free). Fails
 * with DISCO_EPROTO on malformed or truncated input, DISCO_ENOMEM when out
 * of memory; then *out is nil, *used is 0 and nothing is leaked.
 *
 * Memory: one heap block per string, bytes, array payload and list items
 * array, so any part of the result can be kept or freed on its own. The
 * memory allocated is at most a small constant times len, whatever lengths
 * the input claims.
 *
 * A decoded error keeps code, pid, message and nesting as sent.
 */
int disco__value_decode(const uint8_t *buf, size_t len, size_t *used, disco_value *out);

/* The same three with rendezvous allowed (NULL rdv: not). */
size_t disco__value_encoded_size_rdv(const disco_value *v, const disco__rdv_out *rdv);
int disco__value_encode_rdv(const disco_value *v, uint8_t *buf, size_t cap, size_t *used,
                            const disco__rdv_out *rdv);
/* As disco__value_encode_rdv, but a value that does not fit in cap bytes
 * returns DISCO__ENCODE_NO_ROOM (> 0) with no error set: a guess at the
 * size of small messages costs nothing when it fails. What rdv->expose
 * recorded meanwhile stays recorded. */
#define DISCO__ENCODE_NO_ROOM 1
int disco__value_try_encode_rdv(const disco_value *v, uint8_t *buf, size_t cap, size_t *used,
                                const disco__rdv_out *rdv);
int disco__value_decode_rdv(const uint8_t *buf, size_t len, size_t *used, disco_value *out,
                            disco__rdv_in *rdv);
/* As disco__value_decode_rdv, but when the value is a list of at most
 * nroom items, they go to room (marked DISCO__VALUE_INPLACE), which must
 * outlive the list: a call's arguments decode into the call's record with
 * no allocation for their array. Everything else is as usual, so an item
 * may still be moved out and kept. */
int disco__value_decode_into(const uint8_t *buf, size_t len, size_t *used,
                             disco_value *out, disco__rdv_in *rdv, disco_value *room,
                             size_t nroom);

/* ---- frame header (frame.c) ------------------------------------------ */

#define DISCO__FRAME_HEADER_SIZE 32
/* "DSC1" as it appears in the stream. */
#define DISCO__FRAME_MAGIC 0x31435344u
/* A sensible default for the largest payload a receiver accepts; large
 * arrays go by rendezvous, not in one eager frame. */
#define DISCO__FRAME_MAX_PAYLOAD_DEFAULT (64u << 20)

/* Message kinds. These numbers are the protocol: never renumber; add new
 * kinds before DISCO__FRAME_KIND_END. 0 is never valid. */
typedef enum disco__frame_kind {
    DISCO__FRAME_CALL = 1,       /* remotecall: result stays in a future */
    DISCO__FRAME_CALL_FETCH = 2, /* remotecall_fetch: result is sent back */
    DISCO__FRAME_CALL_WAIT = 3,  /* remotecall_wait: completion sent back */
    DISCO__FRAME_REMOTE_DO = 4,  /* remote_do: nothing comes back */
    DISCO__FRAME_RESULT = 5,     /* a call's value */
    DISCO__FRAME_ERROR = 6,      /* a call's error */
    DISCO__FRAME_IDENTIFY = 7,   /* reserved (identities travel in the handshake) */
    DISCO__FRAME_IDENTIFY_ACK = 8, /* a worker accepts another worker's dial */
    DISCO__FRAME_JOIN = 9,           /* master -> new worker: your pid, peers */
    DISCO__FRAME_JOIN_COMPLETE = 10, /* new worker -> master */
    DISCO__FRAME_REF_ADD = 11,       /* distributed refcount: add client */
    DISCO__FRAME_REF_DEL = 12,       /* distributed refcount: drop client */
    DISCO__FRAME_SHUTDOWN = 13,      /* orderly exit */
    DISCO__FRAME_INTERRUPT = 14,     /* interrupt the calls running here */
    DISCO__FRAME_UPGRADE = 15,       /* handshake initiator: my transports */
    DISCO__FRAME_UPGRADED = 16,      /* acceptor: the transport chosen */
    DISCO__FRAME_RDV_DONE = 17,      /* a result's rendezvous data is read */
    DISCO__FRAME_KIND_END            /* one past the last kind */
} disco__frame_kind;

/* Flag bits the receiver understands; any other bit set is DISCO_EPROTO. */
/* Sent in a batch (disco_batch_begin): the answer may be held back to go
 * with the batch's other answers. */
#define DISCO__FRAME_BATCH 0x01u
#define DISCO__FRAME_FLAGS_KNOWN 0x01u

/*
 * The fixed header, in stream order (offsets in bytes):
 *    0  u32 magic        DISCO__FRAME_MAGIC
 *    4  u8  kind         disco__frame_kind
 *    5  u8  flags        DISCO__FRAME_FLAGS_KNOWN bits only
 *    6  u16 reserved     0
 *    8  u32 payload_len  bytes of payload following the header
 *   12  u32 reply_to     pid the answer goes to (0: none)
 *   16  u64 call_id      the caller's number for this call (0: none)
 *   24  u64 function_id  disco__function_id of the callee (0: none)
 */
typedef struct disco__frame_header {
    uint8_t kind;
    uint8_t flags;
    uint32_t payload_len;
    uint32_t reply_to;
    uint64_t call_id;
    uint64_t function_id;
} disco__frame_header;

/* Writes h into out. DISCO_EINVAL (nothing written) for an unknown kind or
 * unknown flags. */
int disco__frame_header_encode(const disco__frame_header *h,
                               uint8_t out[DISCO__FRAME_HEADER_SIZE]);

/*
 * Reads a header from buf[0..len). DISCO_EPROTO when len is below
 * DISCO__FRAME_HEADER_SIZE, the magic is wrong, reserved bits or unknown
 * flags are set or the kind is unknown; DISCO_EMSGSIZE when payload_len is
 * above max_payload. *h is written only on success.
 */
int disco__frame_header_decode(const uint8_t *buf, size_t len, uint32_t max_payload,
                               disco__frame_header *h);

/* "CALL", "RESULT", ...; "UNKNOWN" for anything else. */
const char *disco__frame_kind_name(int kind);

/* ---- function ids (function_id.c) ------------------------------------ */

/*
 * The wire identity of a registered function: 64-bit FNV-1a of its name's
 * bytes (without the NUL). Every process computes it independently, so this
 * definition must never change. 0 is reserved for "no function"; a name
 * that happened to hash to 0 could not be registered.
 */
uint64_t disco__function_id(const char *name);

#endif /* DISCO_WIRE_WIRE_H */

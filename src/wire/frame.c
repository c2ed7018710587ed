/* SPDX-License-Identifier: BSD-3-Clause */
/* The fixed 32-byte frame header; its layout is in wire.h. */
#include <string.h>

#include "wire/wire.h"

/* Unaligned little-endian fields (wire.h requires a little-endian host):
 * each is one load or store, where byte loops cost every frame some
 * hundred instructions. */
static void put_u16(uint8_t *p, uint16_t x) { memcpy(p, &x, sizeof(x)); }
static void put_u32(uint8_t *p, uint32_t x) { memcpy(p, &x, sizeof(x)); }
static void put_u64(uint8_t *p, uint64_t x) { memcpy(p, &x, sizeof(x)); }

static uint16_t get_u16(const uint8_t *p)
{
    uint16_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static int kind_known(unsigned kind) { return kind >= 1 && kind < DISCO__FRAME_KIND_END; }

int disco__frame_header_encode(const disco__frame_header *h,
                               uint8_t out[DISCO__FRAME_HEADER_SIZE])
{
    if (!h || !out)
        return disco_error_set(DISCO_EINVAL, "frame encode: NULL argument");
    if (!kind_known(h->kind))
        return disco_error_set(DISCO_EINVAL, "frame encode: unknown kind %u", h->kind);
    if (h->flags & ~DISCO__FRAME_FLAGS_KNOWN)
        return disco_error_set(DISCO_EINVAL, "frame encode: unknown flags 0x%02x",
                               h->flags & ~DISCO__FRAME_FLAGS_KNOWN);
    put_u32(out + 0, DISCO__FRAME_MAGIC);
    out[4] = h->kind;
    out[5] = h->flags;
    put_u16(out + 6, 0);
    put_u32(out + 8, h->payload_len);
    put_u32(out + 12, h->reply_to);
    put_u64(out + 16, h->call_id);
    put_u64(out + 24, h->function_id);
    return 0;
}

int disco__frame_header_decode(const uint8_t *buf, size_t len, uint32_t max_payload,
                               disco__frame_header *h)
{
    if (!h || (!buf && len))
        return disco_error_set(DISCO_EINVAL, "frame decode: NULL argument");
    if (len < DISCO__FRAME_HEADER_SIZE)
        return disco_error_set(DISCO_EPROTO,
                               "frame decode: header truncated: %zu of %d bytes", len,
                               DISCO__FRAME_HEADER_SIZE);
    uint32_t magic = get_u32(buf);
    if (magic != DISCO__FRAME_MAGIC)
        return disco_error_set(DISCO_EPROTO,
                               "frame decode: bad magic 0x%08x (want 0x%08x)", magic,
                               DISCO__FRAME_MAGIC);
    uint16_t reserved = get_u16(buf + 6);
    if (reserved)
        return disco_error_set(DISCO_EPROTO, "frame decode: reserved bits set (0x%04x)",
                               reserved);
    uint8_t kind = buf[4], flags = buf[5];
    if (!kind_known(kind))
        return disco_error_set(DISCO_EPROTO, "frame decode: unknown kind %u", kind);
    if (flags & ~DISCO__FRAME_FLAGS_KNOWN)
        return disco_error_set(
            DISCO_EPROTO, "frame decode: unknown flags 0x%02x in a %s frame",
            flags & ~DISCO__FRAME_FLAGS_KNOWN, disco__frame_kind_name(kind));
    uint32_t plen = get_u32(buf + 8);
    if (plen > max_payload)
        return disco_error_set(
            DISCO_EMSGSIZE,
            "frame decode: %s payload of %u bytes exceeds the limit of %u",
            disco__frame_kind_name(kind), plen, max_payload);
    h->kind = kind;
    h->flags = flags;
    h->payload_len = plen;
    h->reply_to = get_u32(buf + 12);
    h->call_id = get_u64(buf + 16);
    h->function_id = get_u64(buf + 24);
    return 0;
}

const char *disco__frame_kind_name(int kind)
{
    switch (kind) {
    case DISCO__FRAME_CALL: return "CALL";
    case DISCO__FRAME_CALL_FETCH: return "CALL_FETCH";
    case DISCO__FRAME_CALL_WAIT: return "CALL_WAIT";
    case DISCO__FRAME_REMOTE_DO: return "REMOTE_DO";
    case DISCO__FRAME_RESULT: return "RESULT";
    case DISCO__FRAME_ERROR: return "ERROR";
    case DISCO__FRAME_IDENTIFY: return "IDENTIFY";
    case DISCO__FRAME_IDENTIFY_ACK: return "IDENTIFY_ACK";
    case DISCO__FRAME_JOIN: return "JOIN";
    case DISCO__FRAME_JOIN_COMPLETE: return "JOIN_COMPLETE";
    case DISCO__FRAME_REF_ADD: return "REF_ADD";
    case DISCO__FRAME_REF_DEL: return "REF_DEL";
    case DISCO__FRAME_SHUTDOWN: return "SHUTDOWN";
    case DISCO__FRAME_INTERRUPT: return "INTERRUPT";
    case DISCO__FRAME_UPGRADE: return "UPGRADE";
    case DISCO__FRAME_UPGRADED: return "UPGRADED";
    case DISCO__FRAME_RDV_DONE: return "RDV_DONE";
    default: return "UNKNOWN";
    }
}

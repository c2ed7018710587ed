/* SPDX-License-Identifier: BSD-3-Clause */
/* The connection handshake; the protocol is described in auth.h. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/auth.h"
#include "disco/error.h"

enum { T_HELLO = 1, T_CHALLENGE = 2, T_PROOF = 3, T_ABORT = 4 };
enum { R_AUTH = 1, R_VERSION = 2, R_PROTO = 3 };
enum { ST_WAIT_HELLO, ST_WAIT_CHALLENGE, ST_WAIT_PROOF, ST_DONE, ST_FAILED };

static const uint8_t magic[4] = {'D', 'S', 'H', 'K'};
static const char label_acceptor[] = "disco-acceptor";
static const char label_initiator[] = "disco-initiator";
static const char label_session[] = "disco-session";

/* Offsets inside the encoded identity. */
#define ID_PID 0
#define ID_UUID 4
#define ID_HOST_LEN (ID_UUID + DISCO__IDENTITY_UUID_SIZE)
#define ID_HOST (ID_HOST_LEN + 1)
#define ID_ADDR_LEN (ID_HOST + DISCO__IDENTITY_HOST_MAX)
#define ID_ADDR (ID_ADDR_LEN + 1)

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, (uint16_t)(v >> 16));
    put_u16(p + 2, (uint16_t)v);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)get_u16(p) << 16 | get_u16(p + 2);
}

static const char *type_name(int type)
{
    switch (type) {
    case T_HELLO: return "HELLO";
    case T_CHALLENGE: return "CHALLENGE";
    case T_PROOF: return "PROOF";
    case T_ABORT: return "ABORT";
    }
    return "an unknown message";
}

static size_t msg_size(int type)
{
    switch (type) {
    case T_HELLO: return DISCO__AUTH_HELLO_SIZE;
    case T_CHALLENGE: return DISCO__AUTH_CHALLENGE_SIZE;
    case T_PROOF: return DISCO__AUTH_PROOF_SIZE;
    }
    return DISCO__AUTH_ABORT_SIZE;
}

static int expected_type(const disco__auth *a)
{
    switch (a->state) {
    case ST_WAIT_HELLO: return T_HELLO;
    case ST_WAIT_CHALLENGE: return T_CHALLENGE;
    case ST_WAIT_PROOF: return T_PROOF;
    }
    return 0;
}

/* Room for n more bytes of output. The sizes cannot overflow tx: a side
 * queues at most two messages before its caller takes them (HELLO + PROOF,
 * HELLO + ABORT or CHALLENGE + ABORT). */
static uint8_t *tx_reserve(disco__auth *a, size_t n)
{
    if (n > sizeof(a->tx) - a->tx_len)
        return NULL;
    uint8_t *p = a->tx + a->tx_len;
    a->tx_len += n;
    return p;
}

static void put_header(uint8_t *p, uint16_t version, int type, int reason)
{
    memcpy(p, magic, sizeof(magic));
    put_u16(p + 4, version);
    p[6] = (uint8_t)type;
    p[7] = (uint8_t)reason;
}

static void wipe_key(disco__auth *a)
{
    OPENSSL_cleanse(a->key, sizeof(a->key));
    a->key_len = 0;
}

/* Ends the handshake with failure `code`; reason != 0 queues an ABORT that
 * tells the peer why. Returns code, with the message in the last error. */
__attribute__((format(printf, 4, 5))) static int
fail(disco__auth *a, int code, int reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
    va_end(ap);
    a->state = ST_FAILED;
    a->status = code;
    wipe_key(a);
    uint8_t *p;
    if (reason && (p = tx_reserve(a, DISCO__AUTH_ABORT_SIZE)) != NULL)
        put_header(p, a->version, T_ABORT, reason);
    return disco_error_set(code, "%s", a->msg);
}

/* The result of a finished handshake, again. */
static int again(const disco__auth *a)
{
    if (a->status < 0)
        disco_error_set(a->status, "%s", a->msg);
    return a->status;
}

static int text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

/* Checks our own identity; DISCO_EINVAL when it cannot be encoded. */
static int identity_check(disco__auth *a, const disco__identity *id)
{
    if (!id)
        return fail(a, DISCO_EINVAL, 0, "handshake: identity is NULL");
    if (id->pid < 0)
        return fail(a, DISCO_EINVAL, 0, "handshake: identity pid %d < 0",
                    (int)id->pid);
    size_t h = strnlen(id->host, sizeof(id->host));
    size_t n = strnlen(id->addr, sizeof(id->addr));
    if (h > DISCO__IDENTITY_HOST_MAX || !text_ok(id->host, h))
        return fail(a, DISCO_EINVAL, 0,
                    "handshake: identity host name must be at most %d "
                    "bytes of printable ASCII",
                    DISCO__IDENTITY_HOST_MAX);
    if (n > DISCO__IDENTITY_ADDR_MAX || !text_ok(id->addr, n))
        return fail(a, DISCO_EINVAL, 0,
                    "handshake: identity address must be at most %d bytes "
                    "of printable ASCII",
                    DISCO__IDENTITY_ADDR_MAX);
    return 0;
}

/* Encodes a checked identity; padding is zero so there is one encoding. */
static void identity_encode(const disco__identity *id, uint8_t *out)
{
    size_t h = strlen(id->host), n = strlen(id->addr);
    memset(out, 0, DISCO__IDENTITY_WIRE_SIZE);
    put_u32(out + ID_PID, (uint32_t)id->pid);
    memcpy(out + ID_UUID, id->uuid, DISCO__IDENTITY_UUID_SIZE);
    out[ID_HOST_LEN] = (uint8_t)h;
    memcpy(out + ID_HOST, id->host, h);
    out[ID_ADDR_LEN] = (uint8_t)n;
    memcpy(out + ID_ADDR, id->addr, n);
}

/* Decodes one text field of the peer's identity into dst (max + 1 bytes). */
static int text_decode(disco__auth *a, const uint8_t *in, size_t len_at,
                       size_t max, const char *what, char *dst)
{
    size_t n = in[len_at];
    const uint8_t *s = in + len_at + 1;
    if (n > max)
        return fail(a, DISCO_EMSGSIZE, R_PROTO,
                    "handshake: peer's %s is %zu bytes, at most %zu allowed",
                    what, n, max);
    if (!text_ok((const char *)s, n))
        return fail(a, DISCO_EPROTO, R_PROTO,
                    "handshake: peer's %s is not printable ASCII", what);
    for (size_t i = n; i < max; i++)
        if (s[i] != 0)
            return fail(a, DISCO_EPROTO, R_PROTO,
                        "handshake: peer's %s has non-zero padding", what);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int identity_decode(disco__auth *a, const uint8_t *in,
                           disco__identity *id)
{
    memset(id, 0, sizeof(*id));
    id->pid = (int32_t)get_u32(in + ID_PID);
    if (id->pid < 0)
        return fail(a, DISCO_EPROTO, R_PROTO,
                    "handshake: peer's identity has pid %d < 0", (int)id->pid);
    memcpy(id->uuid, in + ID_UUID, DISCO__IDENTITY_UUID_SIZE);
    int rc = text_decode(a, in, ID_HOST_LEN, DISCO__IDENTITY_HOST_MAX,
                         "host name", id->host);
    if (rc == 0)
        rc = text_decode(a, in, ID_ADDR_LEN, DISCO__IDENTITY_ADDR_MAX,
                         "address", id->addr);
    return rc;
}

/* out = HMAC-SHA256(cookie, label | version | n1 | n2 | id). The fields have
 * fixed sizes and the two labels differ, so the input is unambiguous. */
static int compute_mac(disco__auth *a, const char *label, const uint8_t *n1,
                       const uint8_t *n2, const uint8_t *id, uint8_t *out)
{
    uint8_t in[sizeof(label_initiator) + 2 + 2 * DISCO__AUTH_NONCE_SIZE +
               DISCO__IDENTITY_WIRE_SIZE];
    size_t ll = strlen(label), off = 0;
    memcpy(in, label, ll);
    off += ll;
    put_u16(in + off, a->version);
    off += 2;
    memcpy(in + off, n1, DISCO__AUTH_NONCE_SIZE);
    off += DISCO__AUTH_NONCE_SIZE;
    memcpy(in + off, n2, DISCO__AUTH_NONCE_SIZE);
    off += DISCO__AUTH_NONCE_SIZE;
    memcpy(in + off, id, DISCO__IDENTITY_WIRE_SIZE);
    off += DISCO__IDENTITY_WIRE_SIZE;
    unsigned int out_len = 0;
    if (!HMAC(EVP_sha256(), a->key, (int)a->key_len, in, off, out, &out_len) ||
        out_len != DISCO__AUTH_MAC_SIZE) {
        char why[128];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        ERR_clear_error();
        return fail(a, DISCO_ESYS, 0, "handshake: HMAC-SHA256 failed (%s)",
                    why);
    }
    return 0;
}

/* Checks the proof `mac` the peer sent over its encoded identity `id`. */
static int verify(disco__auth *a, const char *label, const uint8_t *n1,
                  const uint8_t *n2, const uint8_t *id, const uint8_t *mac)
{
    uint8_t want[DISCO__AUTH_MAC_SIZE];
    int rc = compute_mac(a, label, n1, n2, id, want);
    if (rc == 0 && CRYPTO_memcmp(want, mac, sizeof(want)) != 0)
        rc = fail(a, DISCO_EAUTH, R_AUTH,
                  "authentication failed: peer's proof does not match our "
                  "cookie (different cluster cookie, replayed or altered "
                  "handshake)");
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

/* session = HMAC-SHA256(cookie, "disco-session" | version | nonce_i |
 * nonce_a): the same at both ends, known to no one without the cookie. */
static int derive_session(disco__auth *a)
{
    uint8_t in[sizeof(label_session) + 2 + 2 * DISCO__AUTH_NONCE_SIZE];
    size_t ll = strlen(label_session), off = ll;
    memcpy(in, label_session, ll);
    put_u16(in + off, a->version);
    off += 2;
    bool initiator = a->role == DISCO__AUTH_INITIATOR;
    memcpy(in + off, initiator ? a->nonce_self : a->nonce_peer, DISCO__AUTH_NONCE_SIZE);
    off += DISCO__AUTH_NONCE_SIZE;
    memcpy(in + off, initiator ? a->nonce_peer : a->nonce_self, DISCO__AUTH_NONCE_SIZE);
    off += DISCO__AUTH_NONCE_SIZE;
    unsigned int out_len = 0;
    if (!HMAC(EVP_sha256(), a->key, (int)a->key_len, in, off, a->session, &out_len) ||
        out_len != DISCO__AUTH_MAC_SIZE) {
        ERR_clear_error();
        return fail(a, DISCO_ESYS, 0, "handshake: HMAC-SHA256 failed for the session key");
    }
    return 0;
}

static int succeed(disco__auth *a, const disco__identity *peer)
{
    int rc = derive_session(a);
    if (rc < 0)
        return rc;
    a->peer = *peer;
    a->state = ST_DONE;
    a->status = 1;
    wipe_key(a);
    return 1;
}

/* Acceptor: HELLO received, answer with CHALLENGE. */
static int on_hello(disco__auth *a)
{
    uint8_t mac[DISCO__AUTH_MAC_SIZE];
    memcpy(a->nonce_peer, a->rx + DISCO__AUTH_HEADER_SIZE,
           DISCO__AUTH_NONCE_SIZE);
    int rc = compute_mac(a, label_acceptor, a->nonce_peer, a->nonce_self,
                         a->id_self, mac);
    if (rc < 0)
        return rc;
    uint8_t *p = tx_reserve(a, DISCO__AUTH_CHALLENGE_SIZE);
    if (!p)
        return fail(a, DISCO_ESTATE, 0, "handshake: output not taken");
    put_header(p, a->version, T_CHALLENGE, 0);
    p += DISCO__AUTH_HEADER_SIZE;
    memcpy(p, a->nonce_self, DISCO__AUTH_NONCE_SIZE);
    p += DISCO__AUTH_NONCE_SIZE;
    memcpy(p, a->id_self, DISCO__IDENTITY_WIRE_SIZE);
    memcpy(p + DISCO__IDENTITY_WIRE_SIZE, mac, sizeof(mac));
    a->state = ST_WAIT_PROOF;
    return 0;
}

/* Initiator: CHALLENGE received; verify mac_a, then answer with PROOF. */
static int on_challenge(disco__auth *a)
{
    const uint8_t *nonce = a->rx + DISCO__AUTH_HEADER_SIZE;
    const uint8_t *id = nonce + DISCO__AUTH_NONCE_SIZE;
    const uint8_t *mac = id + DISCO__IDENTITY_WIRE_SIZE;
    disco__identity peer;
    memcpy(a->nonce_peer, nonce, DISCO__AUTH_NONCE_SIZE);
    int rc = identity_decode(a, id, &peer);
    if (rc == 0)
        rc = verify(a, label_acceptor, a->nonce_self, a->nonce_peer, id, mac);
    uint8_t proof[DISCO__AUTH_MAC_SIZE];
    if (rc == 0)
        rc = compute_mac(a, label_initiator, a->nonce_peer, a->nonce_self,
                         a->id_self, proof);
    if (rc < 0)
        return rc;
    uint8_t *p = tx_reserve(a, DISCO__AUTH_PROOF_SIZE);
    if (!p)
        return fail(a, DISCO_ESTATE, 0, "handshake: output not taken");
    put_header(p, a->version, T_PROOF, 0);
    p += DISCO__AUTH_HEADER_SIZE;
    memcpy(p, a->id_self, DISCO__IDENTITY_WIRE_SIZE);
    memcpy(p + DISCO__IDENTITY_WIRE_SIZE, proof, sizeof(proof));
    return succeed(a, &peer);
}

/* Acceptor: PROOF received; verify mac_i. */
static int on_proof(disco__auth *a)
{
    const uint8_t *id = a->rx + DISCO__AUTH_HEADER_SIZE;
    const uint8_t *mac = id + DISCO__IDENTITY_WIRE_SIZE;
    disco__identity peer;
    int rc = identity_decode(a, id, &peer);
    if (rc == 0)
        rc = verify(a, label_initiator, a->nonce_self, a->nonce_peer, id, mac);
    return rc < 0 ? rc : succeed(a, &peer);
}

static int on_abort(disco__auth *a, int reason)
{
    switch (reason) {
    case R_AUTH:
        return fail(a, DISCO_EAUTH, 0,
                    "authentication failed: peer rejected our proof "
                    "(different cluster cookie, or the handshake was altered)");
    case R_VERSION:
        return fail(a, DISCO_EPROTO, 0,
                    "handshake: peer reported a protocol version mismatch");
    case R_PROTO:
        return fail(a, DISCO_EPROTO, 0,
                    "handshake: peer rejected our message as malformed");
    }
    return fail(a, DISCO_EPROTO, 0,
                "handshake: peer aborted the handshake (reason %d)", reason);
}

/* A whole header is in rx: magic first, then version (so that any two
 * versions meet here), then type. Sets rx_need for the rest. */
static int on_header(disco__auth *a)
{
    const uint8_t *p = a->rx;
    if (memcmp(p, magic, sizeof(magic)) != 0)
        return fail(a, DISCO_EPROTO, R_PROTO,
                    "handshake: peer is not speaking the disco handshake "
                    "(bad magic %02x %02x %02x %02x)",
                    p[0], p[1], p[2], p[3]);
    unsigned version = get_u16(p + 4);
    if (version != a->version)
        return fail(a, DISCO_EPROTO, R_VERSION,
                    "handshake: protocol version mismatch: peer speaks "
                    "version %u, this process speaks version %u",
                    version, (unsigned)a->version);
    int type = p[6], want = expected_type(a);
    if (type == T_ABORT)
        return on_abort(a, p[7]);
    if (type != want)
        return fail(a, DISCO_EPROTO, R_PROTO,
                    "handshake: got %s (type %d) while waiting for %s",
                    type_name(type), type, type_name(want));
    if (p[7] != 0)
        return fail(a, DISCO_EPROTO, R_PROTO,
                    "handshake: %s has reserved byte %d, not 0",
                    type_name(type), p[7]);
    a->rx_need = msg_size(type);
    return 0;
}

static int on_message(disco__auth *a)
{
    switch (a->state) {
    case ST_WAIT_HELLO: return on_hello(a);
    case ST_WAIT_CHALLENGE: return on_challenge(a);
    case ST_WAIT_PROOF: return on_proof(a);
    }
    return fail(a, DISCO_ESTATE, 0, "handshake: message in state %d",
                a->state);
}

int disco__auth_init_version(disco__auth *a, int role, const char *cookie,
                             const disco__identity *self, uint16_t version)
{
    if (!a)
        return disco_error_set(DISCO_EINVAL, "handshake: state is NULL");
    memset(a, 0, sizeof(*a));
    a->version = version;
    a->role = role;
    a->rx_need = DISCO__AUTH_HEADER_SIZE;
    if (role != DISCO__AUTH_INITIATOR && role != DISCO__AUTH_ACCEPTOR)
        return fail(a, DISCO_EINVAL, 0, "handshake: bad role %d", role);
    size_t len = cookie ? strnlen(cookie, DISCO_CLUSTER_COOKIE_MAX + 1) : 0;
    if (len == 0 || len > DISCO_CLUSTER_COOKIE_MAX)
        return fail(a, DISCO_EINVAL, 0,
                    "handshake: the cookie must be 1 to %d bytes",
                    DISCO_CLUSTER_COOKIE_MAX);
    int rc = identity_check(a, self);
    if (rc < 0)
        return rc;
    memcpy(a->key, cookie, len);
    a->key_len = len;
    identity_encode(self, a->id_self);
    if (RAND_bytes(a->nonce_self, sizeof(a->nonce_self)) != 1)
        return fail(a, DISCO_ESYS, 0,
                    "handshake: the random number generator failed");
    if (role == DISCO__AUTH_ACCEPTOR) {
        a->state = ST_WAIT_HELLO;
        return 0;
    }
    uint8_t *p = tx_reserve(a, DISCO__AUTH_HELLO_SIZE);
    put_header(p, a->version, T_HELLO, 0);
    memcpy(p + DISCO__AUTH_HEADER_SIZE, a->nonce_self, DISCO__AUTH_NONCE_SIZE);
    a->state = ST_WAIT_CHALLENGE;
    return 0;
}

int disco__auth_init(disco__auth *a, int role, const char *cookie,
                     const disco__identity *self)
{
    return disco__auth_init_version(a, role, cookie, self,
                                    DISCO__AUTH_VERSION);
}

int disco__auth_output(disco__auth *a, const uint8_t **buf, size_t *len)
{
    if (!a || !buf || !len)
        return disco_error_set(DISCO_EINVAL, "handshake: NULL argument");
    *buf = a->tx;
    *len = a->tx_len;
    a->tx_len = 0;
    return 0;
}

int disco__auth_input(disco__auth *a, const uint8_t *buf, size_t len,
                      size_t *used)
{
    if (!a || !used || (!buf && len))
        return disco_error_set(DISCO_EINVAL, "handshake: NULL argument");
    *used = 0;
    if (a->status != 0)
        return again(a);
    /* Reads exactly one header, then exactly the rest of that message:
     * never a byte beyond the handshake's last message. */
    while (*used < len) {
        size_t take = a->rx_need - a->rx_have;
        if (take > len - *used)
            take = len - *used;
        memcpy(a->rx + a->rx_have, buf + *used, take);
        a->rx_have += take;
        *used += take;
        if (a->rx_have < a->rx_need)
            break;
        int rc = a->rx_need == DISCO__AUTH_HEADER_SIZE ? on_header(a) : 0;
        if (rc < 0)
            return rc;
        if (a->rx_have < a->rx_need)
            continue; /* header done, now the body */
        a->rx_have = 0;
        a->rx_need = DISCO__AUTH_HEADER_SIZE;
        rc = on_message(a);
        if (rc != 0)
            return rc;
    }
    return a->status;
}

int disco__auth_eof(disco__auth *a)
{
    if (!a)
        return disco_error_set(DISCO_EINVAL, "handshake: state is NULL");
    if (a->status != 0)
        return again(a);
    return fail(a, DISCO_EPROTO, 0,
                "handshake: connection closed while waiting for %s "
                "(%zu bytes of it received)",
                type_name(expected_type(a)), a->rx_have);
}

int disco__auth_status(const disco__auth *a)
{
    return a ? a->status : DISCO_EINVAL;
}

const disco__identity *disco__auth_peer(const disco__auth *a)
{
    return a && a->status == 1 ? &a->peer : NULL;
}

const uint8_t *disco__auth_session(const disco__auth *a)
{
    return a && a->status == 1 ? a->session : NULL;
}

void disco__auth_fini(disco__auth *a)
{
    if (a)
        OPENSSL_cleanse(a, sizeof(*a));
}

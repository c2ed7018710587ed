/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The connection handshake: cookie-keyed challenge-response, protocol version
 * check, then identity. Every connection runs it before anything else.
 *
 * Sans-I/O: the state machine never touches a socket. The caller takes the
 * bytes to send from disco__auth_output, feeds what it receives to
 * disco__auth_input and reports end-of-stream with disco__auth_eof, on any
 * transport, blocking or not, in whatever pieces the bytes arrive.
 *
 * Protocol (version 1). Integers are big-endian. Every message starts with
 * the same 8-byte header:
 *
 *     magic "DSHK" (4) | version u16 | type u8 | reason u8
 *
 * magic and version are the part that no later version may change: they are
 * checked first, before the type, so that peers of different versions always
 * fail with a version mismatch that names both versions. reason is 0 except
 * in ABORT.
 *
 *     I -> A  HELLO      header(type 1) | nonce_i (32)                  40 B
 *     A -> I  CHALLENGE  header(type 2) | nonce_a (32) | identity_a
 *                        | mac_a (32)                                  286 B
 *     I -> A  PROOF      header(type 3) | identity_i | mac_i (32)      254 B
 *     either  ABORT      header(type 4, reason)                          8 B
 *
 *     mac_a = HMAC-SHA256(key = cookie, "disco-acceptor"  | version u16
 *                         | nonce_i | nonce_a | identity_a)
 *     mac_i = HMAC-SHA256(key = cookie, "disco-initiator" | version u16
 *                         | nonce_a | nonce_i | identity_i)
 *
 * I is the initiator (the side that connected), A the acceptor. Nonces are
 * 32 bytes from RAND_bytes, fresh for every handshake; identities are the
 * fixed 214-byte encoding below, exactly as sent. The distinct labels and
 * nonce orders keep one side's proof from ever serving as the other's.
 *
 * The acceptor proves first and the initiator checks mac_a (CRYPTO_memcmp)
 * before it sends its own proof, so a process that connects to an impostor
 * gives it nothing computed from the cookie. The initiator is authenticated
 * once mac_a verifies (its PROOF is then queued: send it before anything
 * else); the acceptor once mac_i verifies. The cookie itself never crosses
 * the wire, and a recorded transcript is useless against the other side's
 * fresh nonce. All messages have fixed sizes: the state machine never reads
 * a byte past the end of the handshake, so what follows in the stream (the
 * initiator may send its first message right behind PROOF) is left to the
 * caller.
 *
 * Identity encoding (214 bytes): pid i32 | uuid (16) | host_len u8 |
 * host (64, zero padded) | addr_len u8 | addr (128, zero padded). Lengths
 * above the maximum fail with DISCO_EMSGSIZE; the text must be printable
 * ASCII and the padding zero (one encoding per identity), else DISCO_EPROTO.
 *
 * On failure the side that detects it queues an ABORT (reason 1: the proof
 * did not verify, 2: version mismatch, 3: malformed message) for the caller
 * to send, best effort, before closing: its peer then fails with the same
 * kind of error instead of seeing a bare close. So a cookie mismatch fails at
 * both ends with DISCO_EAUTH, a version mismatch with DISCO_EPROTO naming
 * both versions. (An ABORT carries nothing derived from the cookie.) The one
 * failure the initiator cannot learn from the handshake is the acceptor
 * rejecting PROOF, since the initiator is done by then; the acceptor closes
 * the connection and the initiator sees that.
 *
 * Scope: this authenticates who is at the other end when the connection
 * opens. It does not encrypt or sign the traffic that follows: an attacker
 * able to rewrite packets in flight can still take over an authenticated TCP
 * connection.
 */
#ifndef DISCO_CORE_AUTH_H
#define DISCO_CORE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "disco/cluster.h"

#define DISCO__AUTH_VERSION 1
#define DISCO__AUTH_NONCE_SIZE 32
#define DISCO__AUTH_MAC_SIZE 32

#define DISCO__IDENTITY_UUID_SIZE 16
#define DISCO__IDENTITY_HOST_MAX 64
#define DISCO__IDENTITY_ADDR_MAX 128
#define DISCO__IDENTITY_WIRE_SIZE                                              \
    (4 + DISCO__IDENTITY_UUID_SIZE + 1 + DISCO__IDENTITY_HOST_MAX + 1 +        \
     DISCO__IDENTITY_ADDR_MAX)

/* Sizes of the messages (header included). */
#define DISCO__AUTH_HEADER_SIZE 8
#define DISCO__AUTH_HELLO_SIZE                                                 \
    (DISCO__AUTH_HEADER_SIZE + DISCO__AUTH_NONCE_SIZE)
#define DISCO__AUTH_CHALLENGE_SIZE                                             \
    (DISCO__AUTH_HEADER_SIZE + DISCO__AUTH_NONCE_SIZE +                        \
     DISCO__IDENTITY_WIRE_SIZE + DISCO__AUTH_MAC_SIZE)
#define DISCO__AUTH_PROOF_SIZE                                                 \
    (DISCO__AUTH_HEADER_SIZE + DISCO__IDENTITY_WIRE_SIZE + DISCO__AUTH_MAC_SIZE)
#define DISCO__AUTH_ABORT_SIZE DISCO__AUTH_HEADER_SIZE
#define DISCO__AUTH_MSG_MAX DISCO__AUTH_CHALLENGE_SIZE

/* Who a process is, as the other end of a connection learns it. */
typedef struct disco__identity {
    int32_t pid;                             /* disco pid >= 0, 0: none yet */
    uint8_t uuid[DISCO__IDENTITY_UUID_SIZE]; /* random, per process start */
    char host[DISCO__IDENTITY_HOST_MAX + 1]; /* host name, NUL-terminated */
    char addr[DISCO__IDENTITY_ADDR_MAX + 1]; /* listening address, or "" */
} disco__identity;

enum { DISCO__AUTH_INITIATOR = 1, DISCO__AUTH_ACCEPTOR = 2 };

/* One handshake. Caller storage; the fields are private. Not thread-safe:
 * one connection, one caller at a time. */
typedef struct disco__auth {
    int state;
    int role;
    int status; /* 0 in progress, 1 authenticated, < 0 failed */
    uint16_t version;
    size_t key_len;
    uint8_t key[DISCO_CLUSTER_COOKIE_MAX];
    uint8_t nonce_self[DISCO__AUTH_NONCE_SIZE];
    uint8_t nonce_peer[DISCO__AUTH_NONCE_SIZE];
    uint8_t id_self[DISCO__IDENTITY_WIRE_SIZE];
    uint8_t session[DISCO__AUTH_MAC_SIZE];
    disco__identity peer;
    size_t rx_have, rx_need;
    uint8_t rx[DISCO__AUTH_MSG_MAX];
    size_t tx_len;
    uint8_t tx[2 * DISCO__AUTH_MSG_MAX];
    char msg[224]; /* the failure's message, repeated by later calls */
} disco__auth;

/*
 * Starts a handshake as DISCO__AUTH_INITIATOR or DISCO__AUTH_ACCEPTOR with
 * the cluster cookie (1 to DISCO_CLUSTER_COOKIE_MAX bytes, copied) and this
 * process's identity. The initiator's HELLO is queued at once. Returns 0,
 * DISCO_EINVAL (bad role, cookie or identity) or DISCO_ESYS (no randomness).
 */
int disco__auth_init(disco__auth *a, int role, const char *cookie,
                     const disco__identity *self);

/* Same, speaking protocol version `version` instead of DISCO__AUTH_VERSION:
 * for tests of version mismatches. */
int disco__auth_init_version(disco__auth *a, int role, const char *cookie,
                             const disco__identity *self, uint16_t version);

/*
 * Hands over the bytes to send now: *buf and *len (*len may be 0). The caller
 * sends all of them, in order, before any later output; *buf stays valid
 * until the next call on a. After a failure this is the ABORT to send before
 * closing (best effort). Returns 0, or DISCO_EINVAL for NULL arguments.
 */
int disco__auth_output(disco__auth *a, const uint8_t **buf, size_t *len);

/*
 * Feeds len received bytes. *used is set to how many were consumed: all of
 * them while the handshake goes on, fewer once it ends (the rest belongs to
 * whatever follows the handshake on the connection). Returns 0 while in
 * progress, 1 when the peer is authenticated (then check output: the
 * initiator's PROOF is still to be sent), or a negative code on failure:
 * DISCO_EAUTH (proof does not verify: different cookie, replay, tampering),
 * DISCO_EPROTO (version mismatch, not a disco peer, malformed or unexpected
 * message), DISCO_EMSGSIZE (a length beyond its limit), DISCO_ESYS (crypto
 * library failure). The detail is in disco_last_error(). Once finished, it
 * returns the same result again without consuming anything.
 */
int disco__auth_input(disco__auth *a, const uint8_t *buf, size_t len,
                      size_t *used);

/* The peer closed its end. Returns 1 when already authenticated, the
 * failure's code when already failed, otherwise fails the handshake with
 * DISCO_EPROTO ("connection closed during the handshake ..."). */
int disco__auth_eof(disco__auth *a);

/* 0 in progress, 1 authenticated, or the negative failure code. */
int disco__auth_status(const disco__auth *a);

/* The authenticated peer's identity; NULL until disco__auth_input has
 * returned 1. */
const disco__identity *disco__auth_peer(const disco__auth *a);

/* A secret both ends derive when the handshake succeeds (32 bytes,
 * HMAC-SHA256 of the cookie over both nonces), for proving later that
 * another connection belongs to this one (see src/core/upgrade.c); NULL
 * until authenticated. It never travels in clear. */
const uint8_t *disco__auth_session(const disco__auth *a);

/* Wipes the handshake (cookie copy included). Safe at any point; the key is
 * already wiped once the handshake has finished either way. */
void disco__auth_fini(disco__auth *a);

#endif

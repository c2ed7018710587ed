/* SPDX-License-Identifier: BSD-3-Clause */
/* The cluster cookie and the connection handshake (src/core/auth.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "core/auth.h"
#include "disco.h"
#include "test_util.h"

#define HELLO DISCO__AUTH_HELLO_SIZE
#define CHALLENGE DISCO__AUTH_CHALLENGE_SIZE
#define PROOF DISCO__AUTH_PROOF_SIZE
#define HDR DISCO__AUTH_HEADER_SIZE
#define IDSZ DISCO__IDENTITY_WIRE_SIZE
#define NONCE DISCO__AUTH_NONCE_SIZE

static const char *self_path;

static const char cookie_a[] = "correct horse battery staple 8d1f0c2e";
static const char cookie_b[] = "correct horse battery staple 8d1f0c2f";

static void make_id(disco__identity *id, int32_t pid, const char *host,
                    const char *addr)
{
    memset(id, 0, sizeof(*id));
    id->pid = pid;
    for (int i = 0; i < DISCO__IDENTITY_UUID_SIZE; i++)
        id->uuid[i] = (uint8_t)(pid * 16 + i);
    snprintf(id->host, sizeof(id->host), "%s", host);
    snprintf(id->addr, sizeof(id->addr), "%s", addr);
}

/*
 * Two handshakes wired to each other in memory. side 0 is the initiator,
 * side 1 the acceptor; stream[k] records every byte side k sent (after the
 * optional tampering), delivered in pieces of at most `chunk` bytes and at
 * most limit[k] bytes in all.
 */
struct pump {
    disco__auth side[2];
    disco__identity id[2];
    int rc[2];
    char msg[2][256];
    uint8_t stream[2][1024];
    size_t len[2], delivered[2], limit[2];
    size_t chunk;
    int flip_stream; /* -1: none */
    size_t flip_at;
    uint8_t flip_mask;
};

static void pump_init_v(struct pump *p, const char *ck_i, const char *ck_a,
                        uint16_t v_i, uint16_t v_a)
{
    memset(p, 0, sizeof(*p));
    p->chunk = SIZE_MAX;
    p->limit[0] = p->limit[1] = SIZE_MAX;
    p->flip_stream = -1;
    make_id(&p->id[0], 1, "head-node", "");
    make_id(&p->id[1], 2, "node017.cluster", "10.1.2.17:9123");
    int rc = disco__auth_init_version(&p->side[0], DISCO__AUTH_INITIATOR, ck_i,
                                      &p->id[0], v_i);
    assert_int_equal(rc, 0);
    rc = disco__auth_init_version(&p->side[1], DISCO__AUTH_ACCEPTOR, ck_a,
                                  &p->id[1], v_a);
    assert_int_equal(rc, 0);
}

static void pump_init(struct pump *p, const char *ck_i, const char *ck_a)
{
    pump_init_v(p, ck_i, ck_a, DISCO__AUTH_VERSION, DISCO__AUTH_VERSION);
}

static void note(struct pump *p, int k, int rc)
{
    p->rc[k] = rc;
    if (rc < 0)
        snprintf(p->msg[k], sizeof(p->msg[k]), "%s",
                 disco_error_message(disco_last_error()));
}

/* Moves bytes until nothing moves any more. */
static void pump_run(struct pump *p)
{
    for (int progress = 1; progress;) {
        progress = 0;
        for (int k = 0; k < 2; k++) {
            const uint8_t *b;
            size_t n;
            assert_int_equal(disco__auth_output(&p->side[k], &b, &n), 0);
            if (!n)
                continue;
            assert_true(p->len[k] + n <= sizeof(p->stream[k]));
            memcpy(p->stream[k] + p->len[k], b, n);
            if (p->flip_stream == k && p->flip_at >= p->len[k] &&
                p->flip_at < p->len[k] + n)
                p->stream[k][p->flip_at] ^= p->flip_mask;
            p->len[k] += n;
            progress = 1;
        }
        for (int k = 0; k < 2; k++) {
            disco__auth *dst = &p->side[1 - k];
            size_t end = p->len[k] < p->limit[k] ? p->len[k] : p->limit[k];
            while (p->delivered[k] < end && disco__auth_status(dst) == 0) {
                size_t n = end - p->delivered[k], used = 0;
                if (n > p->chunk)
                    n = p->chunk;
                int rc = disco__auth_input(dst, p->stream[k] + p->delivered[k],
                                           n, &used);
                note(p, 1 - k, rc);
                assert_true(used <= n);
                p->delivered[k] += used;
                progress |= used > 0;
                if (used < n)
                    break;
            }
        }
    }
    for (int k = 0; k < 2; k++)
        p->rc[k] = disco__auth_status(&p->side[k]);
}

/* Both ends close the connection: a side still waiting learns it. */
static void pump_close(struct pump *p)
{
    for (int k = 0; k < 2; k++)
        if (disco__auth_status(&p->side[k]) == 0)
            note(p, k, disco__auth_eof(&p->side[k]));
}

static void pump_fini(struct pump *p)
{
    disco__auth_fini(&p->side[0]);
    disco__auth_fini(&p->side[1]);
}

static void assert_same_id(const disco__identity *a, const disco__identity *b)
{
    assert_non_null(a);
    assert_int_equal(a->pid, b->pid);
    assert_memory_equal(a->uuid, b->uuid, sizeof(a->uuid));
    assert_string_equal(a->host, b->host);
    assert_string_equal(a->addr, b->addr);
}

/* ---- cookie ---------------------------------------------------------- */

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (const char *c = s; *c; c++)
        if (!strchr("0123456789abcdef", *c))
            return 0;
    return 1;
}

/* Must run before any test that sets the cookie. */
static void test_cookie_default(void **state)
{
    (void)state;
    const char *c = disco_cluster_cookie();
    assert_true(is_hex64(c));
    assert_ptr_equal(disco_cluster_cookie(), c);
    assert_string_equal(disco_cluster_cookie(), c);
}

/* Child mode: threads race to the first disco_cluster_cookie() call. */
#define RACERS 8
static void *race_one(void *out)
{
    *(const char **)out = disco_cluster_cookie();
    return NULL;
}

static int cookie_race_child(void)
{
    pthread_t t[RACERS];
    const char *got[RACERS];
    for (int i = 0; i < RACERS; i++)
        if (pthread_create(&t[i], NULL, race_one, &got[i]) != 0)
            return 1;
    for (int i = 0; i < RACERS; i++)
        pthread_join(t[i], NULL);
    for (int i = 1; i < RACERS; i++)
        if (!got[i] || got[i] != got[0])
            return 2;
    fprintf(stderr, "cookie=%s\n", got[0]);
    return 0;
}

static void run_race_child(char *cookie)
{
    char out[512];
    int status = test_run_self(self_path, "cookie-race", out, sizeof(out));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(sscanf(out, "cookie=%64s", cookie), 1);
    assert_true(is_hex64(cookie));
}

static void test_cookie_per_process_and_race(void **state)
{
    (void)state;
    char c1[65], c2[65];
    run_race_child(c1);
    run_race_child(c2);
    assert_string_not_equal(c1, c2);
    assert_string_not_equal(c1, disco_cluster_cookie());
}

static void test_cookie_set(void **state)
{
    (void)state;
    const char *before = disco_cluster_cookie();
    char saved[DISCO_CLUSTER_COOKIE_MAX + 1];
    snprintf(saved, sizeof(saved), "%s", before);

    assert_int_equal(disco_cluster_cookie_set("my shared secret ~!"), 0);
    assert_string_equal(disco_cluster_cookie(), "my shared secret ~!");
    /* A string handed out earlier is still valid and unchanged. */
    assert_string_equal(before, saved);

    char big[DISCO_CLUSTER_COOKIE_MAX + 2];
    memset(big, 'k', sizeof(big));
    big[DISCO_CLUSTER_COOKIE_MAX] = '\0'; /* exactly the maximum */
    assert_int_equal(disco_cluster_cookie_set(big), 0);
    assert_int_equal(strlen(disco_cluster_cookie()), DISCO_CLUSTER_COOKIE_MAX);
    assert_int_equal(disco_cluster_cookie_set("x"), 0);
    assert_string_equal(disco_cluster_cookie(), "x");

    big[DISCO_CLUSTER_COOKIE_MAX] = 'k'; /* one byte too many */
    big[DISCO_CLUSTER_COOKIE_MAX + 1] = '\0';
    const char *bad[] = {"", big, "trailing newline\n", "tab\there",
                         "del\x7f", "high\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        disco_error_clear();
        assert_int_equal(disco_cluster_cookie_set(bad[i]), DISCO_EINVAL);
        assert_non_null(strstr(disco_error_message(disco_last_error()),
                               "cluster cookie"));
        assert_string_equal(disco_cluster_cookie(), "x");
    }
    assert_int_equal(disco_cluster_cookie_set(NULL), DISCO_EINVAL);
    assert_string_equal(disco_cluster_cookie(), "x");
    assert_int_equal(disco_cluster_cookie_set(saved), 0);
}

/* ---- handshake ------------------------------------------------------- */

static void test_init_checks(void **state)
{
    (void)state;
    disco__auth a;
    disco__identity id;
    make_id(&id, 3, "h", "a:1");
    assert_int_equal(disco__auth_init(&a, 7, cookie_a, &id), DISCO_EINVAL);
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_INITIATOR, NULL, &id),
                     DISCO_EINVAL);
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_INITIATOR, "", &id),
                     DISCO_EINVAL);
    char big[DISCO_CLUSTER_COOKIE_MAX + 2];
    memset(big, 'c', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_INITIATOR, big, &id),
                     DISCO_EINVAL);
    assert_int_equal(
        disco__auth_init(&a, DISCO__AUTH_INITIATOR, cookie_a, NULL),
        DISCO_EINVAL);
    id.pid = -1;
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     DISCO_EINVAL);
    make_id(&id, 3, "bad\nhost", "");
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     DISCO_EINVAL);
    make_id(&id, 3, "h", "");
    memset(id.host, 'h', sizeof(id.host)); /* not terminated */
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     DISCO_EINVAL);
    assert_non_null(strstr(disco_error_message(disco_last_error()), "host"));
    /* A failed init leaves a failed handshake, not a usable one. */
    size_t used = 9;
    uint8_t byte = 0;
    assert_int_equal(disco__auth_input(&a, &byte, 1, &used), DISCO_EINVAL);
    assert_int_equal(used, 0);
    assert_null(disco__auth_peer(&a));

    /* The longest host and address are fine. */
    make_id(&id, 0, "", "");
    memset(id.host, 'h', DISCO__IDENTITY_HOST_MAX);
    memset(id.addr, 'a', DISCO__IDENTITY_ADDR_MAX);
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_INITIATOR, cookie_a, &id),
                     0);
    const uint8_t *b;
    size_t n;
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, HELLO);
    assert_memory_equal(b, "DSHK", 4);
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, 0);
    assert_null(disco__auth_peer(&a));
    assert_int_equal(disco__auth_status(&a), 0);
    disco__auth_fini(&a);

    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     0);
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, 0); /* the acceptor waits for HELLO */
    disco__auth_fini(&a);
}

static void test_handshake_succeeds(void **state)
{
    (void)state;
    /* Whole messages, byte by byte, and odd pieces that straddle the
     * header/body boundaries. */
    const size_t chunks[] = {SIZE_MAX, 1, 2, 3, 7, 8, 9, 100};
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        struct pump p;
        pump_init(&p, cookie_a, cookie_a);
        p.chunk = chunks[c];
        assert_null(disco__auth_peer(&p.side[0]));
        assert_null(disco__auth_peer(&p.side[1]));
        assert_null(disco__auth_session(&p.side[0]));
        pump_run(&p);
        assert_int_equal(p.rc[0], 1);
        assert_int_equal(p.rc[1], 1);
        assert_int_equal(p.len[0], HELLO + PROOF);
        assert_int_equal(p.len[1], CHALLENGE);
        assert_same_id(disco__auth_peer(&p.side[0]), &p.id[1]);
        assert_same_id(disco__auth_peer(&p.side[1]), &p.id[0]);
        /* Both ends derived the same session secret, and it never
         * crossed the wire. */
        const uint8_t *s0 = disco__auth_session(&p.side[0]);
        const uint8_t *s1 = disco__auth_session(&p.side[1]);
        assert_non_null(s0);
        assert_non_null(s1);
        assert_memory_equal(s0, s1, DISCO__AUTH_MAC_SIZE);
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i + DISCO__AUTH_MAC_SIZE <= p.len[k]; i++)
                assert_memory_not_equal(p.stream[k] + i, s0, DISCO__AUTH_MAC_SIZE);
        /* Finished: further input is left alone, the result repeats. */
        size_t used = 5;
        assert_int_equal(disco__auth_input(&p.side[1], (const uint8_t *)"x", 1,
                                           &used),
                         1);
        assert_int_equal(used, 0);
        assert_int_equal(disco__auth_eof(&p.side[0]), 1);
        pump_fini(&p);
    }
}

/* out = HMAC-SHA256(cookie, label | version | n1 | n2 | id), computed here
 * independently of auth.c, from the description in auth.h. */
static void expected_mac(const char *label, uint16_t version,
                         const uint8_t *n1, const uint8_t *n2,
                         const uint8_t *id, uint8_t *out)
{
    uint8_t in[512];
    size_t n = strlen(label);
    unsigned int out_len = 0;
    memcpy(in, label, n);
    in[n++] = (uint8_t)(version >> 8);
    in[n++] = (uint8_t)version;
    memcpy(in + n, n1, NONCE);
    memcpy(in + n + NONCE, n2, NONCE);
    memcpy(in + n + 2 * NONCE, id, IDSZ);
    assert_non_null(HMAC(EVP_sha256(), cookie_a, (int)strlen(cookie_a), in,
                         n + 2 * NONCE + IDSZ, out, &out_len));
    assert_int_equal(out_len, 32);
}

/* The bytes on the wire are exactly what auth.h documents: recompute both
 * proofs from the transcript, for this version and a later one. */
static void test_wire_format_known_answer(void **state)
{
    (void)state;
    const uint16_t versions[] = {DISCO__AUTH_VERSION, 0x0207};
    for (size_t v = 0; v < 2; v++) {
        struct pump p;
        pump_init_v(&p, cookie_a, cookie_a, versions[v], versions[v]);
        pump_run(&p);
        assert_int_equal(p.rc[0], 1);
        assert_int_equal(p.rc[1], 1);
        const uint8_t *hello = p.stream[0], *proof = p.stream[0] + HELLO;
        const uint8_t *chal = p.stream[1];
        uint8_t hdr[HDR] = {'D', 'S', 'H', 'K', (uint8_t)(versions[v] >> 8),
                            (uint8_t)versions[v], 1, 0};
        assert_memory_equal(hello, hdr, HDR);
        hdr[6] = 2;
        assert_memory_equal(chal, hdr, HDR);
        hdr[6] = 3;
        assert_memory_equal(proof, hdr, HDR);

        /* The acceptor's identity: pid 2, uuid, host and address. */
        const uint8_t *id_a = chal + HDR + NONCE;
        assert_memory_equal(id_a, "\x00\x00\x00\x02", 4);
        assert_memory_equal(id_a + 4, p.id[1].uuid, 16);
        assert_int_equal(id_a[20], strlen("node017.cluster"));
        assert_memory_equal(id_a + 21, "node017.cluster", 15);
        assert_int_equal(id_a[21 + 15], 0);
        assert_int_equal(id_a[85], strlen("10.1.2.17:9123"));
        assert_memory_equal(id_a + 86, "10.1.2.17:9123", 14);

        uint8_t mac[32];
        expected_mac("disco-acceptor", versions[v], hello + HDR, chal + HDR,
                     id_a, mac);
        assert_memory_equal(mac, id_a + IDSZ, 32);
        const uint8_t *id_i = proof + HDR;
        expected_mac("disco-initiator", versions[v], chal + HDR, hello + HDR,
                     id_i, mac);
        assert_memory_equal(mac, id_i + IDSZ, 32);
        pump_fini(&p);
    }
}

static void test_wrong_cookie_fails_both_ends(void **state)
{
    (void)state;
    for (int swap = 0; swap < 2; swap++) {
        struct pump p;
        pump_init(&p, swap ? cookie_b : cookie_a, swap ? cookie_a : cookie_b);
        pump_run(&p);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(p.rc[k], DISCO_EAUTH);
            assert_non_null(strstr(p.msg[k], "authentication failed"));
            assert_null(disco__auth_peer(&p.side[k]));
        }
        assert_non_null(strstr(p.msg[0], "does not match our cookie"));
        assert_non_null(strstr(p.msg[1], "peer rejected our proof"));
        /* The initiator sent no proof, only HELLO and an ABORT. */
        assert_int_equal(p.len[0], HELLO + DISCO__AUTH_ABORT_SIZE);
        pump_fini(&p);
    }
}

static void assert_not_in(const struct pump *p, const char *secret)
{
    for (int k = 0; k < 2; k++)
        assert_null(memmem(p->stream[k], p->len[k], secret, strlen(secret)));
}

static void test_cookie_never_on_wire(void **state)
{
    (void)state;
    const char *def = disco_cluster_cookie();
    struct pump p;
    pump_init(&p, def, def);
    pump_run(&p);
    assert_int_equal(p.rc[0], 1);
    assert_int_equal(p.rc[1], 1);
    assert_not_in(&p, def);
    assert_not_in(&p, def + 32); /* nor any half of it */
    pump_fini(&p);

    /* A short cookie, and failed handshakes, too. (Eight bytes: two could
     * turn up in the random nonces and MACs by chance, 1 run in ~600.) */
    pump_init(&p, "k9-short", "k9-short");
    pump_run(&p);
    assert_int_equal(p.rc[1], 1);
    assert_not_in(&p, "k9-short");
    pump_fini(&p);
    pump_init(&p, cookie_a, cookie_b);
    pump_run(&p);
    assert_not_in(&p, cookie_a);
    assert_not_in(&p, cookie_b);
    assert_not_in(&p, "horse");
    pump_fini(&p);
}

static int is_failure(int rc)
{
    return rc == DISCO_EAUTH || rc == DISCO_EPROTO || rc == DISCO_EMSGSIZE;
}

/*
 * Flipping any bit pattern of any byte of any message: the acceptor never
 * accepts. The initiator fails too, except when the flipped message is its
 * own PROOF: it was done when it sent it (see auth.h).
 */
static void test_tamper_every_byte(void **state)
{
    (void)state;
    const uint8_t masks[] = {0x01, 0x02, 0x04, 0x08, 0x10,
                             0x20, 0x40, 0x80, 0xff};
    const size_t lens[2] = {HELLO + PROOF, CHALLENGE};
    long runs = 0;
    for (int k = 0; k < 2; k++)
        for (size_t at = 0; at < lens[k]; at++)
            for (size_t m = 0; m < sizeof(masks); m++) {
                struct pump p;
                pump_init(&p, cookie_a, cookie_a);
                p.flip_stream = k;
                p.flip_at = at;
                p.flip_mask = masks[m];
                p.chunk = (at % 3) ? SIZE_MAX : 5;
                pump_run(&p);
                pump_close(&p);
                if (!is_failure(p.rc[1]))
                    fail_msg("stream %d byte %zu ^ 0x%02x: acceptor rc %d", k,
                             at, masks[m], p.rc[1]);
                assert_null(disco__auth_peer(&p.side[1]));
                int proof = k == 0 && at >= HELLO;
                if (proof)
                    assert_int_equal(p.rc[0], 1);
                else if (!is_failure(p.rc[0]))
                    fail_msg("stream %d byte %zu ^ 0x%02x: initiator rc %d",
                             k, at, masks[m], p.rc[0]);
                pump_fini(&p);
                runs++;
            }
    assert_int_equal(runs, (long)(HELLO + PROOF + CHALLENGE) * 9);
}

static void test_truncated_then_eof(void **state)
{
    (void)state;
    const size_t lens[2] = {HELLO + PROOF, CHALLENGE};
    for (int k = 0; k < 2; k++)
        for (size_t cut = 0; cut < lens[k]; cut++) {
            struct pump p;
            pump_init(&p, cookie_a, cookie_a);
            p.limit[k] = cut;
            pump_run(&p);
            /* The side missing bytes is still waiting, not authenticated. */
            int waiting = 1 - k;
            assert_int_equal(p.rc[waiting], 0);
            assert_null(disco__auth_peer(&p.side[waiting]));
            assert_int_equal(disco__auth_eof(&p.side[waiting]), DISCO_EPROTO);
            assert_non_null(strstr(disco_error_message(disco_last_error()),
                                   "connection closed"));
            assert_null(disco__auth_peer(&p.side[waiting]));
            /* It stays failed. */
            assert_int_equal(disco__auth_eof(&p.side[waiting]), DISCO_EPROTO);
            pump_fini(&p);
        }
}

static void test_version_mismatch(void **state)
{
    (void)state;
    /* Newer initiator, then newer acceptor; with the right cookie and with
     * a wrong one: the version is checked before any proof. */
    for (int newer = 0; newer < 2; newer++)
        for (int bad_cookie = 0; bad_cookie < 2; bad_cookie++) {
            struct pump p;
            uint16_t v[2] = {DISCO__AUTH_VERSION, DISCO__AUTH_VERSION};
            v[newer] = 7;
            pump_init_v(&p, cookie_a, bad_cookie ? cookie_b : cookie_a, v[0],
                        v[1]);
            pump_run(&p);
            for (int k = 0; k < 2; k++) {
                char want[128];
                assert_int_equal(p.rc[k], DISCO_EPROTO);
                snprintf(want, sizeof(want),
                         "peer speaks version %u, this process speaks "
                         "version %u",
                         v[1 - k], v[k]);
                if (!strstr(p.msg[k], want))
                    fail_msg("side %d: \"%s\" lacks \"%s\"", k, p.msg[k], want);
            }
            pump_fini(&p);
        }
}

/* A recorded initiator transcript replayed against a new acceptor, and a
 * recorded acceptor transcript against a new initiator, both fail. */
static void test_replay_fails(void **state)
{
    (void)state;
    struct pump rec;
    pump_init(&rec, cookie_a, cookie_a);
    pump_run(&rec);
    assert_int_equal(rec.rc[1], 1);

    disco__auth a;
    const uint8_t *b;
    size_t n, used;
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a,
                                      &rec.id[1]),
                     0);
    assert_int_equal(disco__auth_input(&a, rec.stream[0], HELLO, &used), 0);
    assert_int_equal(used, HELLO);
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, CHALLENGE);
    /* Same identity, fresh nonce: a different challenge. */
    assert_memory_not_equal(b + HDR, rec.stream[1] + HDR, NONCE);
    assert_int_equal(disco__auth_input(&a, rec.stream[0] + HELLO, PROOF, &used),
                     DISCO_EAUTH);
    assert_null(disco__auth_peer(&a));
    disco__auth_fini(&a);

    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_INITIATOR, cookie_a,
                                      &rec.id[0]),
                     0);
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(disco__auth_input(&a, rec.stream[1], CHALLENGE, &used),
                     DISCO_EAUTH);
    assert_null(disco__auth_peer(&a));
    /* It answered with an ABORT, not with a proof. */
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, DISCO__AUTH_ABORT_SIZE);
    assert_memory_equal(b, "DSHK\x00\x01\x04\x01", HDR);
    disco__auth_fini(&a);
    pump_fini(&rec);
}

/* A side fed the wrong kind of message (its own, reflected) refuses it. */
static void test_unexpected_messages(void **state)
{
    (void)state;
    struct pump rec;
    pump_init(&rec, cookie_a, cookie_a);
    pump_run(&rec);
    disco__auth a;
    size_t used;
    struct {
        int role;
        const uint8_t *msg;
        size_t len;
        const char *what;
    } cases[] = {
        {DISCO__AUTH_INITIATOR, rec.stream[0], HELLO, "got HELLO"},
        {DISCO__AUTH_INITIATOR, rec.stream[0] + HELLO, PROOF, "got PROOF"},
        {DISCO__AUTH_ACCEPTOR, rec.stream[1], CHALLENGE, "got CHALLENGE"},
        {DISCO__AUTH_ACCEPTOR, rec.stream[0] + HELLO, PROOF, "got PROOF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(disco__auth_init(&a, cases[i].role, cookie_a,
                                          &rec.id[0]),
                         0);
        assert_int_equal(disco__auth_input(&a, cases[i].msg, cases[i].len,
                                           &used),
                         DISCO_EPROTO);
        assert_int_equal(used, HDR); /* refused at the header */
        assert_non_null(strstr(disco_error_message(disco_last_error()),
                               cases[i].what));
        disco__auth_fini(&a);
    }
    pump_fini(&rec);
}

static void test_garbage_fails_cleanly(void **state)
{
    (void)state;
    disco__auth a;
    disco__identity id;
    const uint8_t *b;
    size_t n, used;
    make_id(&id, 2, "h", "");

    /* Not a disco peer at all. */
    const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     0);
    assert_int_equal(disco__auth_input(&a, (const uint8_t *)http, strlen(http),
                                       &used),
                     DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "bad magic"));
    assert_int_equal(used, HDR);
    /* The ABORT is handed out once; then the result only repeats. */
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, DISCO__AUTH_ABORT_SIZE);
    assert_memory_equal(b, "DSHK\x00\x01\x04\x03", HDR);
    assert_int_equal(disco__auth_output(&a, &b, &n), 0);
    assert_int_equal(n, 0);
    disco_error_clear();
    assert_int_equal(disco__auth_input(&a, (const uint8_t *)http, 4, &used),
                     DISCO_EPROTO);
    assert_int_equal(used, 0);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "bad magic"));
    disco__auth_fini(&a);

    /* A megabyte of random bytes, whole or after a valid HELLO. */
    size_t big = 1 << 20;
    uint8_t *junk = malloc(big);
    assert_non_null(junk);
    assert_int_equal(RAND_bytes(junk, (int)big), 1);
    junk[0] = 'X';
    for (int role = DISCO__AUTH_INITIATOR; role <= DISCO__AUTH_ACCEPTOR;
         role++) {
        assert_int_equal(disco__auth_init(&a, role, cookie_a, &id), 0);
        assert_true(disco__auth_input(&a, junk, big, &used) < 0);
        assert_true(used <= HDR);
        assert_null(disco__auth_peer(&a));
        disco__auth_fini(&a);
    }
    struct pump rec;
    pump_init(&rec, cookie_a, cookie_a);
    pump_run(&rec);
    memcpy(junk, rec.stream[0], HELLO);
    assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a, &id),
                     0);
    assert_int_equal(disco__auth_input(&a, junk, big, &used), DISCO_EPROTO);
    assert_int_equal(used, HELLO + HDR);
    disco__auth_fini(&a);

    /* Random messages behind valid headers, many times: never accepted. */
    long rounds = test_scaled(2000);
    for (long r = 0; r < rounds; r++) {
        uint8_t msg[PROOF];
        assert_int_equal(RAND_bytes(msg, sizeof(msg)), 1);
        if (r & 1) /* a valid identity, to reach the MAC check */
            memcpy(msg, rec.stream[0] + HELLO, HDR + IDSZ);
        else
            memcpy(msg, "DSHK\x00\x01\x03\x00", HDR);
        assert_int_equal(disco__auth_init(&a, DISCO__AUTH_ACCEPTOR, cookie_a,
                                          &id),
                         0);
        assert_int_equal(disco__auth_input(&a, rec.stream[0], HELLO, &used), 0);
        assert_true(is_failure(disco__auth_input(&a, msg, sizeof(msg), &used)));
        assert_null(disco__auth_peer(&a));
        disco__auth_fini(&a);
    }
    free(junk);
    pump_fini(&rec);
}

/* Lengths in the identity are checked: too long is DISCO_EMSGSIZE, bad text
 * or padding DISCO_EPROTO, before any proof is computed. */
static void test_identity_lengths_checked(void **state)
{
    (void)state;
    struct pump rec;
    pump_init(&rec, cookie_a, cookie_a);
    pump_run(&rec);
    const size_t id_at[2] = {HELLO + HDR, HDR + NONCE}; /* PROOF, CHALLENGE */
    struct {
        size_t off;
        uint8_t val;
        int rc;
        const char *what;
    } cases[] = {
        {20, 65, DISCO_EMSGSIZE, "host name is 65 bytes, at most 64"},
        {20, 255, DISCO_EMSGSIZE, "host name is 255 bytes"},
        {85, 129, DISCO_EMSGSIZE, "address is 129 bytes, at most 128"},
        {85, 200, DISCO_EMSGSIZE, "address is 200 bytes"},
        {21, '\n', DISCO_EPROTO, "host name is not printable"},
        {84, 'x', DISCO_EPROTO, "host name has non-zero padding"},
        {213, 1, DISCO_EPROTO, "address has non-zero padding"},
        {0, 0x80, DISCO_EPROTO, "pid"},
    };
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            int role = k ? DISCO__AUTH_INITIATOR : DISCO__AUTH_ACCEPTOR;
            disco__auth a;
            size_t used;
            uint8_t s[sizeof(rec.stream[0])];
            memcpy(s, rec.stream[k], rec.len[k]);
            s[id_at[k] + cases[i].off] = cases[i].val;
            assert_int_equal(disco__auth_init(&a, role, cookie_a, &rec.id[k]),
                             0);
            if (!k) /* the acceptor first needs a HELLO */
                assert_int_equal(disco__auth_input(&a, s, HELLO, &used), 0);
            const uint8_t *msg = k ? s : s + HELLO;
            size_t len = k ? CHALLENGE : PROOF;
            assert_int_equal(disco__auth_input(&a, msg, len, &used),
                             cases[i].rc);
            if (!strstr(disco_error_message(disco_last_error()), cases[i].what))
                fail_msg("\"%s\" lacks \"%s\"",
                         disco_error_message(disco_last_error()),
                         cases[i].what);
            disco__auth_fini(&a);
        }
    pump_fini(&rec);
}

/* Bytes behind the last handshake message belong to the next layer. */
static void test_trailing_bytes_left_alone(void **state)
{
    (void)state;
    struct pump p;
    pump_init(&p, cookie_a, cookie_a);
    p.limit[0] = HELLO; /* hold PROOF back */
    pump_run(&p);
    assert_int_equal(p.rc[0], 1);
    assert_int_equal(p.rc[1], 0);
    uint8_t buf[PROOF + 100];
    memcpy(buf, p.stream[0] + HELLO, PROOF);
    memset(buf + PROOF, 0xAB, 100);
    size_t used;
    assert_int_equal(disco__auth_input(&p.side[1], buf, sizeof(buf), &used), 1);
    assert_int_equal(used, PROOF);
    assert_same_id(disco__auth_peer(&p.side[1]), &p.id[0]);
    pump_fini(&p);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc > 1 && strcmp(argv[1], "cookie-race") == 0)
        return cookie_race_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_default), /* first: nothing set yet */
        cmocka_unit_test(test_cookie_per_process_and_race),
        cmocka_unit_test(test_cookie_set),
        cmocka_unit_test(test_init_checks),
        cmocka_unit_test(test_handshake_succeeds),
        cmocka_unit_test(test_wire_format_known_answer),
        cmocka_unit_test(test_wrong_cookie_fails_both_ends),
        cmocka_unit_test(test_cookie_never_on_wire),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_truncated_then_eof),
        cmocka_unit_test(test_version_mismatch),
        cmocka_unit_test(test_replay_fails),
        cmocka_unit_test(test_unexpected_messages),
        cmocka_unit_test(test_garbage_fails_cleanly),
        cmocka_unit_test(test_identity_lengths_checked),
        cmocka_unit_test(test_trailing_bytes_left_alone),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}

/* SPDX-License-Identifier: BSD-3-Clause */
/* libfabric transport: addresses ("ofi+<provider>://<hex of the raw
 * endpoint name>"), the address vector, error mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/ofi/ofi.h"

static const char hexdigits[] = "0123456789abcdef";

int ofi_addr_format(const char *prov, const uint8_t *raw, size_t rawlen,
                    char *buf, size_t len)
{
    int n = snprintf(buf, len, "ofi+%s://", prov);
    if (n < 0 || (size_t)n + 2 * rawlen + 1 > len)
        return disco_error_set(DISCO_EINVAL,
                               "ofi: a %zu-byte %s address does not fit in %zu bytes",
                               rawlen, prov, len);
    char *p = buf + n;
    for (size_t i = 0; i < rawlen; i++) {
        *p++ = hexdigits[raw[i] >> 4];
        *p++ = hexdigits[raw[i] & 15];
    }
    *p = '\0';
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1; /* upper case is not what we print */
}

int ofi_addr_parse(const char *prov, const char *address, uint8_t *raw,
                   size_t *rawlen)
{
    if (!address)
        return disco_error_set(DISCO_EINVAL, "ofi: NULL address");
    char scheme[48];
    snprintf(scheme, sizeof(scheme), "ofi+%s://", prov);
    size_t slen = strlen(scheme);
    if (strncmp(address, scheme, slen) != 0)
        goto bad;
    const char *h = address + slen;
    size_t hlen = strlen(h);
    if (hlen == 0 || hlen % 2 || hlen / 2 > OFI_ADDR_RAW_MAX)
        goto bad;
    for (size_t i = 0; i < hlen / 2; i++) {
        int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
        if (hi < 0 || lo < 0)
            goto bad;
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    *rawlen = hlen / 2;
    return 0;
bad:
    return disco_error_set(DISCO_EINVAL,
                           "ofi: bad address \"%s\" (want %s followed by an even "
                           "number of lower-case hex digits)",
                           address, scheme);
}

int ofi_av_lookup_locked(ofi_transport *tp, const uint8_t *raw, size_t len,
                         fi_addr_t *out)
{
    for (size_t i = 0; i < tp->naddrs; i++)
        if (tp->addrs[i].len == len && memcmp(tp->addrs[i].raw, raw, len) == 0) {
            *out = tp->addrs[i].fi;
            return 0;
        }
    if (tp->naddrs == tp->addrs_cap) {
        size_t cap = tp->addrs_cap ? 2 * tp->addrs_cap : 16;
        ofi_peer_addr *a = realloc(tp->addrs, cap * sizeof(*a));
        if (!a)
            return disco_error_set(DISCO_ENOMEM, "ofi: out of memory");
        tp->addrs = a;
        tp->addrs_cap = cap;
    }
    fi_addr_t fa = FI_ADDR_NOTAVAIL;
    /* Synchronous: the AV is opened without an event queue. String formats
     * (FI_ADDR_STR, shm) may be read up to a fixed name size: pad. */
    uint8_t pad[OFI_ADDR_PAD] = {0};
    memcpy(pad, raw, len);
    int rc = fi_av_insert(tp->av, pad, 1, &fa, 0, NULL);
    if (rc != 1 || fa == FI_ADDR_NOTAVAIL)
        return disco_error_set(DISCO_EINVAL,
                               "ofi: fi_av_insert rejected a %zu-byte %s address",
                               len, tp->prov);
    ofi_peer_addr *pa = &tp->addrs[tp->naddrs++];
    memcpy(pa->raw, raw, len);
    pa->len = len;
    pa->fi = fa;
    *out = fa;
    return 0;
}

void ofi_peer_name(ofi_transport *tp, const uint8_t *raw, size_t len, char *buf,
                   size_t buflen)
{
    char s[OFI_PEER_LEN];
    size_t n = sizeof(s);
    uint8_t copy[OFI_ADDR_PAD] = {0}; /* as in ofi_av_lookup_locked */
    memcpy(copy, raw, len);
    if (!fi_av_straddr(tp->av, copy, s, &n)) {
        snprintf(buf, buflen, "?");
        return;
    }
    /* "fi_sockaddr_in://127.0.0.1:4000" -> "127.0.0.1:4000"; other formats
     * (shm's names) keep their scheme. */
    const char *sep = strstr(s, "://");
    const char *name = strncmp(s, "fi_sockaddr", 11) == 0 && sep ? sep + 3 : s;
    snprintf(buf, buflen, "%s", name);
}

int ofi_status(int fi_err)
{
    switch (fi_err) {
    case FI_ENOMEM:
        return DISCO_ENOMEM;
    case FI_ETIMEDOUT:
        return DISCO_ETIMEDOUT;
    case FI_ECANCELED:
    case FI_ECONNRESET:
    case FI_ECONNABORTED:
    case FI_ESHUTDOWN:
        return DISCO_ECLOSED;
    case FI_EACCES:
    case FI_EPERM:
        return DISCO_EPERM;
    case FI_EINVAL:
        return DISCO_EINVAL;
    case FI_ENOSYS:
    case FI_ENODATA:
        return DISCO_ENOSYS;
    default:
        return DISCO_EIO;
    }
}

int ofi_fail(int rc, const char *what)
{
    int err = rc < 0 ? -rc : rc;
    return disco_error_set(ofi_status(err), "ofi: %s: %s", what, fi_strerror(err));
}

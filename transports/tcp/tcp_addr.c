/* SPDX-License-Identifier: BSD-3-Clause */
/* TCP transport: address parsing and formatting, socket options, errno
 * mapping. */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>

#include "transports/tcp/tcp.h"

#define TCP_SCHEME "tcp://"

/* Fills ss from a numeric host: "A.B.C.D", "[v6]" or, when bare_v6 is set,
 * a bare "v6" literal. n is the length of host (not NUL-terminated). */
static int host_to_sockaddr(const char *host, size_t n, bool bare_v6,
                            struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 2];
    memset(ss, 0, sizeof(*ss));
    if (n == 0 || n >= sizeof(buf))
        return -1;
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']')
            return -1;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, buf, &s6->sin6_addr) != 1)
            return -1;
        s6->sin6_family = AF_INET6;
        *len = sizeof(*s6);
        return 0;
    }
    memcpy(buf, host, n);
    buf[n] = '\0';
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        *len = sizeof(*s4);
        return 0;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (bare_v6 && inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        *len = sizeof(*s6);
        return 0;
    }
    return -1;
}

int tcp_host_parse(const char *host, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    if (!host)
        host = "127.0.0.1";
    if (host_to_sockaddr(host, strlen(host), true, ss, len) != 0)
        return disco_error_set(DISCO_EINVAL,
                               "tcp: bad listening host \"%s\" (want a numeric "
                               "IPv4 or IPv6 address)",
                               host);
    return 0;
}

int tcp_addr_parse(const char *address, struct sockaddr_storage *ss,
                   socklen_t *len)
{
    if (!address)
        return disco_error_set(DISCO_EINVAL, "tcp: NULL address");
    size_t slen = strlen(TCP_SCHEME);
    if (strncmp(address, TCP_SCHEME, slen) != 0)
        goto bad;
    const char *host = address + slen;
    const char *colon = strrchr(host, ':');
    if (!colon)
        goto bad;
    /* An IPv6 host must be bracketed so that its colons are not the port's. */
    size_t hlen = (size_t)(colon - host);
    if (host[0] == '[' ? colon[-1] != ']' : memchr(host, ':', hlen) != NULL)
        goto bad;
    const char *p = colon + 1;
    if (p[0] == '0')
        goto bad; /* no port 0, no leading zeros */
    unsigned long port = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        port = port * 10 + (unsigned long)(*p - '0');
    if (*p != '\0' || digits == 0 || port == 0 || port > 65535)
        goto bad;
    if (host_to_sockaddr(host, hlen, false, ss, len) != 0)
        goto bad;
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    return 0;
bad:
    return disco_error_set(DISCO_EINVAL,
                           "tcp: bad address \"%s\" (want tcp://A.B.C.D:PORT "
                           "or tcp://[IPv6]:PORT)",
                           address);
}

void tcp_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
    } else {
        snprintf(buf, len, "?");
    }
}

int tcp_status(int err)
{
    switch (err) {
    case ENOMEM:
    case ENOBUFS:
        return DISCO_ENOMEM;
    case ETIMEDOUT:
        return DISCO_ETIMEDOUT;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return DISCO_ECLOSED;
    case EACCES:
    case EPERM:
        return DISCO_EPERM;
    case EMFILE:
    case ENFILE:
        return DISCO_ESYS;
    default:
        return DISCO_EIO;
    }
}

int tcp_fail_errno(int err, const char *what, const char *where)
{
    char buf[128];
    const char *msg = strerror_r(err, buf, sizeof(buf)); /* GNU variant */
    return disco_error_set(tcp_status(err), "tcp: %s %s: %s", what, where, msg);
}

void tcp_set_nodelay(int fd)
{
    int one = 1;
    /* Cannot fail on a TCP socket; a failure would only cost latency. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

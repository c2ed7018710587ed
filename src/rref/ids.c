/* SPDX-License-Identifier: BSD-3-Clause */
/* Identities: a reference's RRID, the process behind a connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/runtime.h"
#include "disco/rref.h"

int disco_remoteref_id(const disco_value *v, int *where, int *whence, uint64_t *id)
{
    if (!v || v->type != DISCO_REF)
        return disco_error_set(DISCO_EINVAL, "disco_remoteref_id: not a reference");
    if (where)
        *where = v->ref.where;
    if (whence)
        *whence = v->ref.whence;
    if (id)
        *id = v->ref.id;
    return 0;
}

/* "host:port" of a socket address, as the transport names its peers. */
static bool format_addr(const struct sockaddr_storage *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, ntohs(in->sin_port));
        return true;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in = (const void *)sa;
        inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, ntohs(in->sin6_port));
        return true;
    }
    return false;
}

int disco_worker_id_from_socket(int fd)
{
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    char peer[128];
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) != 0 || !format_addr(&sa, peer, sizeof(peer)))
        return disco_error_set(DISCO_EINVAL, "descriptor %d is not a connected socket", fd);
    for (int pid = 1; pid < DISCO__MAX_PROCS; pid++) {
        disco__peer *p = atomic_load_explicit(&disco__rt.peers[pid], memory_order_acquire);
        if (!p || atomic_load_explicit(&p->state, memory_order_acquire) != PEER_READY)
            continue;
        pthread_rwlock_rdlock(&p->conn_lock);
        bool same = p->conn && !strcmp(disco__rt.ops->conn_peer(p->conn), peer);
        pthread_rwlock_unlock(&p->conn_lock);
        if (same)
            return pid;
    }
    return disco_error_set(DISCO_ENOPROC, "descriptor %d (%s) is no cluster connection of "
                                          "process %d", fd, peer, disco__rt.myid);
}

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Remote references: the table each process keeps, and the distributed
 * reference counting between processes (see disco/rref.h for the model).
 *
 * Every process has one entry per reference it knows, keyed by (whence,
 * id) — ids come from each process's one call/reference counter, so the
 * pair is unique in the cluster. An entry counts the reference's local
 * holds (owned DISCO_REF values, remote channel handles, owner-side
 * operations in progress). The process that keeps the value — a remote
 * channel's `where`, a future's `whence` (results come back to the caller)
 * — is its owner; it also counts, per other process, the grants that
 * process has (its client set). A client owes the owner one grant per
 * reference it received and returns them all when its last hold goes.
 *
 * The protocol, and why no count reaches zero while a reference is in
 * flight:
 *   - S sends a reference to P (any frame, disco__rref_grant): if P is the
 *     owner nothing is sent (P takes a hold when it decodes the frame,
 *     before anything S sends later on the same connection, such as S's
 *     own release); if S is the owner it adds P at once; otherwise S asks
 *     the owner to add P and waits for the answer *before* the frame leaves
 *     S. So P's grant is counted before P can see the reference, and S
 *     still holds its own meanwhile.
 *   - P's last hold goes: P sends its grants back (remote_do of
 *     "disco.ref_del"); the owner removes P when they reach zero.
 *   - The owner frees the value when it has no hold and no client.
 * The synchronous add costs a round trip only when a reference moves
 * between two processes that are both not its owner; Julia's asynchronous
 * adds race with the receiver's delete on another connection and free or
 * leak values (JULIA-SEMANTICS.md, 2.5).
 *
 * A process that dies leaves every client set (peer observer; the master
 * also tells every worker, which may not be connected to the dead one),
 * and later adds for it are ignored.
 *
 * Lock: one mutex over the table; no call that blocks or sends runs under
 * it.
 */
#ifndef DISCO_RREF_RREF_H
#define DISCO_RREF_RREF_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "disco/channel.h"
#include "disco/rpc.h"
#include "disco/value.h"

typedef struct disco__client {
    int pid;
    int64_t n; /* grants */
} disco__client;

typedef struct disco__rref {
    struct disco__rref *next; /* hash chain */
    disco_ref ref;            /* flags 0 */
    int64_t holds;
    int64_t grants;           /* client: what this process owes the owner */
    disco__client *clients;   /* owner: other processes holding it */
    size_t nclients, capclients;
    disco_channel *backing;   /* owner of a remote channel: owned disco_values */
    pthread_mutex_t items;    /* owner: a take and a fetch copying an item */
    disco_future *future;     /* the local future object, or NULL (weak) */
    bool future_retained;     /* owner: keeps it while held or granted */
    disco_value value;        /* client: what a carrying future brought */
    bool has_value;
} disco__rref;

/* The process that keeps r's value: a channel's where, a future's whence. */
static inline int disco__rref_owner(const disco_ref *r)
{
    return r->kind == DISCO_REF_FUTURE ? r->whence : r->where;
}

/* Takes a hold on r's entry, creating it if need be: the entry, or NULL
 * (last error set) when out of memory. */
disco__rref *disco__rref_hold(const disco_ref *r);

/* The same, also counting `grants` more owed to the owner (a client that
 * the owner has just counted). */
disco__rref *disco__rref_hold_granted(const disco_ref *r, int64_t grants);

/* The entry of r with one more hold if it exists here, else NULL. */
disco__rref *disco__rref_find_hold(const disco_ref *r);

/* Drops a hold taken above. */
void disco__rref_release(disco__rref *e);

/* Owner: a new entry for a remote channel created by process whence,
 * storing its items in backing (taken over), with whence as a client
 * (unless it is this process: then with one hold for its handle). */
disco__rref *disco__rref_new_channel(const disco_ref *r, disco_channel *backing);

/* Owner of a future: links f (this process's call) to its reference. */
int disco__rref_link_future(disco_future *f, const disco_ref *r);

/* A local future object of a reference (whence's own, or a client's
 * proxy) with one more reference for the caller, or NULL. */
disco_future *disco__rref_future_of(disco__rref *e);

/* Sets e's future object (a client's proxy), weakly. */
void disco__rref_set_future(disco__rref *e, disco_future *f);

/* future.c: f, linked to a reference, is being freed. */
void disco__rref_future_freed(disco_future *f, const disco_ref *r);

/* Grants every reference in v to process `to`, which v is about to be sent
 * to (see the protocol above). May block (a round trip to an owner). */
int disco__rref_grant(int to, const disco_value *v);

/* Forgets process pid in every client set (it died). */
void disco__rref_forget(int pid);

/* Owner: adds n grants of r for process pid (a reference sent there). */
int disco__rref_add_local(const disco_ref *r, int pid, int64_t n);

#endif

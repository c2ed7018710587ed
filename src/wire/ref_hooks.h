/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * How remote references take part in the value layer.
 *
 * A DISCO_REF value that owns its memory (a decoded one, a copy) also
 * holds the reference in its process: copying it takes a hold, freeing it
 * drops one, decoding one records the grant its sender made (src/rref owns
 * the bookkeeping). A future marked DISCO_REF_CARRIES travels with its
 * value: the encoder asks for it, the decoder hands it over.
 *
 * src/rref installs these once at load time; the wire layer sits below it
 * and reaches it only through this table. Without it (NULL), references are
 * plain data. The hooks never block; they may be called on any thread,
 * including the network progress thread.
 */
#ifndef DISCO_WIRE_REF_HOOKS_H
#define DISCO_WIRE_REF_HOOKS_H

#include "disco/value.h"

typedef struct disco__ref_hooks {
    /* An owned copy of r is made. */
    void (*hold)(const disco_ref *r);
    /* An owned value of r is freed. */
    void (*drop)(const disco_ref *r);
    /* r was decoded (owned from now on). carried: the value a carrying
     * future brought, moved in (the hook owns it), or NULL. */
    void (*received)(const disco_ref *r, disco_value *carried);
    /* The value a carrying future travels with, or NULL (last error set)
     * when this process does not have it. Stable while r is held. */
    const disco_value *(*carried)(const disco_ref *r);
    /* v is about to be sent to process `to`: grants it the references in
     * v (may block for a round trip to their owner; never on the progress
     * thread, whose frames carry no references). 0 or a status. */
    int (*grant)(int to, const disco_value *v);
} disco__ref_hooks;

extern const disco__ref_hooks *disco__refs;

#endif

/* SPDX-License-Identifier: BSD-3-Clause */
/* Error internals shared inside libdisco. */
#ifndef DISCO_BASE_ERROR_INTERNAL_H
#define DISCO_BASE_ERROR_INTERNAL_H

#include "disco/error.h"

/* Where the "last error" lives. The scheduler defines it: inside a task the
 * slot belongs to the task (it migrates between threads with it), outside any
 * task to the calling thread. */
disco_error **disco__error_slot(void);

/* Sets the process an error happened on (the rpc layer and the decoder of
 * errors received from another process). */
void disco__error_set_pid(disco_error *e, int pid);

/* Replaces an error's message (a decoded composite keeps the sender's). 0 or
 * DISCO_ENOMEM (then the old message stays). */
int disco__error_set_message(disco_error *e, const char *msg, size_t len);

#endif

/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Error detail.
 *
 * A disco function reports failure by returning a negative status code
 * (disco/status.h). Where there is more to say, the detail is a disco_error:
 * the code, a message, the process it happened on and, for a composite error
 * (DISCO_ECOMPOSITE, Julia's CompositeException), the nested errors of each
 * failed part.
 *
 * Each task, and each thread outside the scheduler, has its own "last error"
 * slot, like errno but carrying a whole disco_error. A failing disco call sets
 * it; disco_last_error() reads it. It stays until the next failure replaces
 * it or disco_error_clear() is called; success does not clear it.
 */
#ifndef DISCO_ERROR_H
#define DISCO_ERROR_H

#include <stddef.h>

#include "disco/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct disco_error disco_error;

/* A new error with code and printf-style message. Returns NULL only when
 * memory is exhausted. The caller owns it (disco_error_free). */
DISCO_API disco_error *disco_error_new(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A new composite error (DISCO_ECOMPOSITE) that takes ownership of the n
 * errors in parts (the array itself stays the caller's). */
DISCO_API disco_error *disco_error_composite(disco_error **parts, size_t n);

/* A deep copy of e, or NULL when out of memory or e is NULL. */
DISCO_API disco_error *disco_error_copy(const disco_error *e);

/* Frees e and everything nested in it. NULL is allowed. */
DISCO_API void disco_error_free(disco_error *e);

/* The status code (negative). */
DISCO_API int disco_error_code(const disco_error *e);

/* The message, never NULL. Valid as long as e lives. */
DISCO_API const char *disco_error_message(const disco_error *e);

/* The disco process id the error happened on; 0 when it is local. */
DISCO_API int disco_error_pid(const disco_error *e);

/* Number of nested errors (0 unless composite) and the i-th of them. */
DISCO_API size_t disco_error_count(const disco_error *e);
DISCO_API const disco_error *disco_error_nested(const disco_error *e, size_t i);

/*
 * Writes a readable description into buf (at most len bytes, always NUL
 * terminated when len > 0): "message" for a plain error, and for a composite
 * one line per nested error. Returns the length the full text needs, like
 * snprintf, so a caller can size a buffer.
 */
DISCO_API size_t disco_error_format(const disco_error *e, char *buf, size_t len);

/* Replaces the calling task's (or thread's) last error with a new one and
 * returns code, so that a failing function can `return disco_error_set(...)`.
 */
DISCO_API int disco_error_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Replaces the last error with e, taking ownership of it. Returns e's code
 * (DISCO_ENOMEM when e is NULL). */
DISCO_API int disco_error_put(disco_error *e);

/* The calling task's (or thread's) last error, or NULL. Owned by the slot:
 * valid until the next failing call in the same task. */
DISCO_API const disco_error *disco_last_error(void);

/* Removes the last error from the slot and hands it to the caller. */
DISCO_API disco_error *disco_error_take(void);

/* Frees and clears the last error. */
DISCO_API void disco_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_ERROR_H */

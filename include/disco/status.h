/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * disco status codes.
 *
 * Every disco function that can fail returns an int: 0 (DISCO_OK) or one of
 * the negative codes below. Codes that have a POSIX errno equivalent use its
 * negated value (DISCO_ENOMEM == -ENOMEM); codes specific to disco live past
 * DISCO_ERRNO_OFFSET so they never collide with an errno. The detail of a
 * failure (message, where it happened, nested errors) is a disco_error, see
 * disco/error.h.
 */
#ifndef DISCO_STATUS_H
#define DISCO_STATUS_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions exported by libdisco (the library is built with
 * hidden visibility by default). */
#define DISCO_API __attribute__((visibility("default")))

#define DISCO_ERRNO_OFFSET 1000

/* X(name, value, message): the one list that generates the enum,
 * disco_strerror() and disco_status_name(). */
#define DISCO_STATUS_MAP(X)                                                    \
    X(OK, 0, "success")                                                        \
    X(EINVAL, -EINVAL, "invalid argument")                                     \
    X(ENOMEM, -ENOMEM, "out of memory")                                        \
    X(EAGAIN, -EAGAIN, "resource temporarily unavailable")                     \
    X(EBUSY, -EBUSY, "resource busy")                                          \
    X(ETIMEDOUT, -ETIMEDOUT, "timed out")                                      \
    X(ENOSYS, -ENOSYS, "function not implemented")                             \
    X(EPERM, -EPERM, "operation not permitted")                                \
    X(EIO, -EIO, "input/output error")                                         \
    X(EPROTO, -EPROTO, "protocol error: malformed or unexpected data")        \
    X(EMSGSIZE, -EMSGSIZE, "message too large")                               \
    X(ENOENT, -ENOENT, "no such entry")                                        \
    X(ECLOSED, -(DISCO_ERRNO_OFFSET + 1), "channel closed")                    \
    X(ECOMPOSITE, -(DISCO_ERRNO_OFFSET + 2), "several tasks failed")           \
    X(ETASK, -(DISCO_ERRNO_OFFSET + 3), "task failed")                         \
    X(ESTATE, -(DISCO_ERRNO_OFFSET + 4), "operation invalid in this state")    \
    X(ESYS, -(DISCO_ERRNO_OFFSET + 5), "system call failed")                   \
    X(EAUTH, -(DISCO_ERRNO_OFFSET + 6), "authentication failed")               \
    X(EPROCEXIT, -(DISCO_ERRNO_OFFSET + 7), "process exited")                  \
    X(ENOFUNC, -(DISCO_ERRNO_OFFSET + 8), "function not registered")           \
    X(ENOPROC, -(DISCO_ERRNO_OFFSET + 9), "no such process")                   \
    X(EREMOTE, -(DISCO_ERRNO_OFFSET + 10), "remote call failed")              \
    X(EINTERRUPTED, -(DISCO_ERRNO_OFFSET + 11), "interrupted")                 \
    X(ENOWAIT, -(DISCO_ERRNO_OFFSET + 12), "a no-wait function cannot wait")

#define DISCO__STATUS_ENUM(name, value, msg) DISCO_##name = (value),
typedef enum disco_status { DISCO_STATUS_MAP(DISCO__STATUS_ENUM) } disco_status;
#undef DISCO__STATUS_ENUM

/* Human-readable message for a status code ("channel closed"). Never NULL:
 * an unknown code gives "unknown error". */
DISCO_API const char *disco_strerror(int status);

/* Symbolic name of a status code ("DISCO_ECLOSED"), or "DISCO_UNKNOWN". */
DISCO_API const char *disco_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_STATUS_H */

/* SPDX-License-Identifier: BSD-3-Clause */
/* What the build is: sanitizers, and how the runtime's thread-locals are
 * declared. */
#ifndef DISCO_BASE_COMPILER_H
#define DISCO_BASE_COMPILER_H

#if defined(__SANITIZE_ADDRESS__)
#define DISCO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DISCO_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define DISCO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DISCO_TSAN 1
#endif
#endif

/* Thread-locals of the runtime. initial-exec: one %fs-relative load, not a
 * __tls_get_addr call per access from the shared library (glibc keeps
 * static TLS room for this, also for a dlopen'ed libdisco). */
#define DISCO__TLS __thread __attribute__((tls_model("initial-exec")))

#endif

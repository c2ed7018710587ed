/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Julia's macros and Main-module conveniences: @everywhere, loading code on
 * every process, per-process globals with clear!, and @spawn / @spawnat /
 * @fetchfrom.
 *
 * Thread-safety: every function may be called from any task or thread.
 */
#ifndef DISCO_EVERYWHERE_H
#define DISCO_EVERYWHERE_H

#include <stdbool.h>
#include <stddef.h>

#include "disco/rpc.h"
#include "disco/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Julia's @everywhere: runs fn(args) on each of the npids processes in
 * pids (pids NULL: every process, this one included, as procs() says at
 * the call), all at once, and waits for all of them; this process's own
 * call is started last. Returns 0, or DISCO_ECOMPOSITE with a composite
 * last error holding one error per failed process (each naming its pid:
 * "On worker 3: ..."). DISCO_EINVAL for npids < 0 or an unregistered fn.
 */
DISCO_API int disco_everywhere(disco_function fn, const disco_value *args, size_t nargs,
                               const int *pids, int npids);

/*
 * Loads the shared library at path (dlopen: its DISCO_FUNCTIONs register
 * as it loads) on every process, this one included, and remembers it so
 * that the master loads it on every worker added later before
 * disco_addprocs returns (Julia's `@everywhere using Plugin`, which new
 * workers do not get). Returns 0 or DISCO_ECOMPOSITE as disco_everywhere
 * (a process that cannot load it says why, with dlerror's text);
 * DISCO_EINVAL for a NULL or empty path.
 */
DISCO_API int disco_everywhere_load(const char *path);

/*
 * Named globals of this process: the analogue of bindings in Julia's Main.
 * disco_global_set stores a copy of v under name (replacing the old value);
 * with constant, later sets and clears of that name fail with DISCO_EPERM
 * (Julia's const). DISCO_EINVAL for a NULL or empty name or NULL v.
 */
DISCO_API int disco_global_set(const char *name, const disco_value *v, bool constant);

/* A copy of global name's value into *out (owned: free it with
 * disco_value_free). DISCO_EINVAL for a name that is not defined here. */
DISCO_API int disco_global_get(const char *name, disco_value *out);

/*
 * Julia's clear!(syms, pids): sets the n globals in names to nil on each of
 * the npids processes in pids (NULL: every process). A name not defined
 * somewhere is left alone there; a constant fails with DISCO_EPERM. 0 or
 * DISCO_ECOMPOSITE as for disco_everywhere. (disco_clear is clear!(pool),
 * see disco/pool.h.)
 */
DISCO_API int disco_clear_globals(const char *const *names, size_t n, const int *pids,
                                  int npids);

/* Julia's @spawn / @spawnat :any: fn(args) on the next worker in
 * round-robin order over disco_workers() (no load balancing: use a pool
 * for that). The future, or NULL with the last error set. */
DISCO_API disco_future *disco_spawn(disco_function fn, const disco_value *args,
                                    size_t nargs);

/* Julia's @spawnat pid: disco_remotecall under its macro's name. */
DISCO_API disco_future *disco_spawnat(int pid, disco_function fn, const disco_value *args,
                                      size_t nargs);

/* Julia's @fetchfrom pid: disco_remotecall_fetch under its macro's name. */
DISCO_API int disco_fetchfrom(int pid, disco_function fn, const disco_value *args,
                              size_t nargs, disco_value *result);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_EVERYWHERE_H */

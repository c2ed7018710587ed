/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Remote calls and futures (Julia's remotecall family and Future).
 *
 * A function that other processes may call is registered under its name at
 * load time with DISCO_FUNCTION(name); on the wire it is named by a stable
 * 64-bit id of that name, so every process must register it (same program
 * image or same plugin). A call to a function the target does not know fails
 * with DISCO_ENOFUNC naming the function and the worker.
 *
 * Arguments are encoded into the outgoing message before the call returns:
 * the caller may reuse or free them at once. The value of a finished future
 * is owned by the future (and cached: fetching twice does not go back to
 * the worker) until disco_future_release.
 *
 * A call to the calling process itself (pid == disco_myid(), as in Julia)
 * runs as a local task on copies of the arguments, with the same semantics.
 *
 * The encoded arguments of one call, and its result, must fit in one
 * message of at most DISCO_MAX_FRAME bytes (environment; K/M/G suffixes;
 * default 64 MiB; workers inherit the master's): a larger one fails with
 * DISCO_EMSGSIZE at the side that would send it.
 *
 * Progress: messages are read by the scheduler's idle threads, and by a
 * thread outside the scheduler (the program's main thread) while it waits
 * for a future or a channel. DISCO_PROGRESS chooses how they wait:
 *   adaptive (default)  spin, reading the network, for DISCO_SPIN_US
 *                       microseconds (default 100), then sleep in the
 *                       kernel until a message arrives: round trips that
 *                       come back within the budget cost no wake-up, and
 *                       an idle process costs no CPU after the budget;
 *   poll                never sleep: the lowest latency, one core busy per
 *                       waiting thread and per idle scheduler thread (MPI's
 *                       busy-wait; for dedicated nodes);
 *   block               sleep at once: the least CPU, a kernel wake-up
 *                       (several microseconds) on every message.
 * While a thread outside the scheduler reads the network, the scheduler's
 * threads leave it to it; a message that arrives when it has just stopped
 * waiting is read within about a millisecond.
 *
 * A function body runs as a task on the target, so it may block (sleep,
 * take from a channel, fetch another future); a no-wait function
 * (disco_register_nowait) runs without a task, straight from the network.
 * Either reports failure by returning a negative status after
 * disco_error_set(...) (disco_throw is the same); the caller then gets that
 * error with the worker's pid, printed the Julia way: "On worker 2: ...".
 */
#ifndef DISCO_RPC_H
#define DISCO_RPC_H

#include <stdbool.h>
#include <stddef.h>

#include "disco/error.h"
#include "disco/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A remotely callable function: nargs arguments (borrowed for the call) and
 * a result to fill (nil by default; what it points to must stay valid until
 * the function returns, or be owned: DISCO_VALUE_OWNED values are freed by
 * the runtime after sending). Returns 0 or a negative status.
 */
typedef int (*disco_function)(const disco_value *args, size_t nargs,
                              disco_value *result);

/* Registers fn under name (the string must outlive the process: a literal).
 * Registering the same pair again is a no-op; DISCO_EBUSY if another
 * function has that name, DISCO_EINVAL for a NULL name or function. */
DISCO_API int disco_register(const char *name, disco_function fn);

/* Registers a function at load time, before main: DISCO_FUNCTION(square); */
#define DISCO_FUNCTION(fn)                                                     \
    __attribute__((constructor)) static void disco__register_##fn(void)       \
    {                                                                          \
        disco_register(#fn, fn);                                               \
    }

/*
 * Registers fn as a no-wait function: one that never waits and returns
 * quickly (a lookup, an update of local state, a small computation), as
 * the active-message handlers of GASNet and UCX are. The target then runs a
 * call of it as soon as it reads the message, from its network progress,
 * without making a task for it: a same-node round trip costs 5-10 % less
 * (BM_remotecall_fetch_pinned's nowait_gain). Errors, results and the Julia-style error report are those of any
 * call.
 *
 * The price is the contract. While fn runs, its thread reads no message
 * and may be inside another task's wait, so:
 *   - every wait in fn fails with DISCO_ENOWAIT (the last error names fn):
 *     fetching a future that is not ready (so remotecall_fetch too), a
 *     take from an empty channel or a put into a full one, an event that
 *     is not set, disco_sleep, disco_cond_wait, disco_task_join of an
 *     unfinished task, disco_pmap; what need not wait works (a put into a
 *     channel with room, a future already fetched, disco_remotecall and
 *     disco_remote_do, which only send);
 *   - disco_mutex_lock of a held mutex and disco_sync_end with members
 *     still running cannot fail: there the process prints that fn waited
 *     and aborts (use disco_mutex_trylock);
 *   - disco_yield does nothing, disco_interrupted is false, and the call
 *     cannot be interrupted (disco_interrupt);
 *   - a long computation delays every message behind it.
 * A no-wait call may start before calls that were read before it but have
 * not started yet (they wait for a scheduler thread); calls behind it start
 * after it, and its answer is never held back by a batch. All this is for
 * direct calls: the remotecall family and remote_do, also through a pool.
 * pmap and closures may run fn from a task of their own on the worker;
 * there it runs as any function does.
 *
 * Registering and its errors are those of disco_register; registering fn
 * once each way fails with DISCO_EBUSY.
 */
DISCO_API int disco_register_nowait(const char *name, disco_function fn);

/* Registers a no-wait function at load time: DISCO_NOWAIT_FUNCTION(lookup); */
#define DISCO_NOWAIT_FUNCTION(fn)                                              \
    __attribute__((constructor)) static void disco__register_##fn(void)       \
    {                                                                          \
        disco_register_nowait(#fn, fn);                                        \
    }

/* The registered name of fn, or NULL. */
DISCO_API const char *disco_function_name(disco_function fn);

/* Raises an error from a remote function: sets the last error and returns
 * code, for `return disco_throw(DISCO_EINVAL, "sqrt of %g", x);`. */
#define disco_throw disco_error_set

typedef struct disco_future disco_future;

/*
 * Calls fn(args) on process pid and returns a future for the result at
 * once (Julia's remotecall). NULL with the last error set if pid is not a
 * connected process or fn is not registered here. Calls from one process to
 * one worker start in the order they were made.
 */
DISCO_API disco_future *disco_remotecall(disco_function fn, int pid,
                                         const disco_value *args, size_t nargs);

/*
 * Calls and waits for the result (Julia's remotecall_fetch), in one round
 * trip. *result receives an owned copy (free it with disco_value_free).
 * Returns 0 or the call's error status (last error: the remote error).
 */
DISCO_API int disco_remotecall_fetch(disco_function fn, int pid,
                                     const disco_value *args, size_t nargs,
                                     disco_value *result);

/* Calls and waits until the call has finished on pid (Julia's
 * remotecall_wait); returns the ready future, or NULL with the last error
 * set (DISCO_EINTERRUPTED if the calling task is interrupted first: the
 * call goes on, its result is discarded). */
DISCO_API disco_future *disco_remotecall_wait(disco_function fn, int pid,
                                              const disco_value *args,
                                              size_t nargs);

/* Calls fn(args) on pid for its effect only (Julia's remote_do): no future,
 * no reply. A failure is printed on the worker's stderr (which the master
 * shows as "From worker N: ..."). */
DISCO_API int disco_remote_do(disco_function fn, int pid,
                              const disco_value *args, size_t nargs);

/*
 * Batches. Between disco_batch_begin and disco_batch_end, the messages the
 * calling thread sends (remotecall and its family, remote_do, channel puts
 * ...) may be held back and written together when the batch ends: over
 * TCP, one system call for up to 64 KiB of them instead of one each, as
 * MPI codes get from MSG_MORE or libfabric's FI_MORE. The worker then
 * answers the batch's calls together too: an answer may wait until the
 * worker's thread has run the batch's other calls that arrived with it,
 * or until one of them waits for something. Transports that gain nothing
 * from it (shared memory) send at once. Use it to issue many small calls
 * in a row; a single call is fastest outside a batch.
 *
 * Any wait of the calling thread or task (fetch, wait, take, sleep, a
 * yield) first sends what the batch held and ends the batch: a later
 * disco_batch_end does nothing. So does the end of the task that began it.
 * Batches nest: the outermost end sends. Calls keep their order and their
 * semantics; only when their bytes leave changes.
 *
 * Without a batch every answer goes as soon as its call returns: holding
 * the answers of calls that merely arrived together would make a quick
 * call's answer wait for a long one that came behind it.
 */
DISCO_API void disco_batch_begin(void);
DISCO_API void disco_batch_end(void);

/*
 * Waits for the future and gives its value (owned by the future, valid
 * until disco_future_release). A future that holds an error always fails
 * with it (status returned, error in the last-error slot), local or remote.
 */
DISCO_API int disco_future_fetch(disco_future *f, const disco_value **value);

/* Waits until the future is ready; 0 or its error status. Waiting calls
 * (this, fetch, remotecall_fetch) fail with DISCO_EINTERRUPTED, the future
 * still pending, if the calling task is interrupted (see disco/task.h). */
DISCO_API int disco_future_wait(disco_future *f);

/* True when fetch would not wait. */
DISCO_API bool disco_future_isready(disco_future *f);

/* The process the call runs on. */
DISCO_API int disco_future_where(const disco_future *f);

/*
 * Interrupts the calls running on each of the n processes pids (all
 * workers when pids is NULL), as Julia's interrupt(pids) does with Ctrl-C:
 * a call blocked in an interruptible wait (sleep, event, channel, join,
 * future, ...) is woken at once, later waits of the call fail too, and the
 * call's future fails with DISCO_EINTERRUPTED whatever the function
 * returns. A function computing without waiting stops only if it polls
 * disco_interrupted(). Calls that start later are not affected; the
 * process goes on serving. Returns 0 or the first failure (DISCO_ENOPROC
 * for an unknown pid; the other pids are still interrupted).
 */
DISCO_API int disco_interrupt(const int *pids, int n);

/* Drops the caller's reference; the future and its value are freed. A
 * still-running call completes on the worker and its result is discarded. */
DISCO_API void disco_future_release(disco_future *f);

#ifdef __cplusplus
}
#endif
#endif /* DISCO_RPC_H */

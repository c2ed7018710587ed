/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Machine context of a task: what a context switch saves and restores.
 *
 * The hand-written switches (context_x86_64.S, context_aarch64.S) push the
 * callee-saved registers and the floating-point control state (MXCSR and x87
 * control word; FPCR) on the current stack, store the stack pointer in
 * `from`, load `to`'s and pop. Everything else is caller-saved by the ABI, so
 * this is a complete switch for code that calls disco__ctx_switch as a
 * function. configure --with-context=ucontext selects the portable (and much
 * slower: it makes a sigprocmask syscall) swapcontext fallback.
 */
#ifndef DISCO_SCHED_CONTEXT_H
#define DISCO_SCHED_CONTEXT_H

#include <stddef.h>

#ifdef DISCO_CONTEXT_UCONTEXT
#include <ucontext.h>
typedef struct disco__ctx {
    ucontext_t uc;
} disco__ctx;
#else
typedef struct disco__ctx {
    void *sp;
} disco__ctx;
#endif

/* Prepares ctx so that switching to it calls entry(arg) on the stack
 * [stack_lo, stack_lo + size). entry must never return. */
void disco__ctx_make(disco__ctx *ctx, void *stack_lo, size_t size,
                     void (*entry)(void *), void *arg);

/* Saves the running context in from and resumes to. Returns when something
 * switches back to from. */
void disco__ctx_switch(disco__ctx *from, disco__ctx *to);

#endif

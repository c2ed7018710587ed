/* SPDX-License-Identifier: BSD-3-Clause */
/* Portable fallback (configure --with-context=ucontext). swapcontext saves
 * the signal mask with a syscall on every switch: correct, but slow. */
#include <stdint.h>
#include <stdlib.h>

#include "sched/context.h"

static void ucontext_entry(unsigned hi, unsigned lo, unsigned fhi, unsigned flo)
{
    void *arg = (void *)(((uintptr_t)hi << 32) | lo);
    void (*entry)(void *) = (void (*)(void *))(((uintptr_t)fhi << 32) | flo);
    entry(arg);
    abort(); /* entry never returns */
}

void disco__ctx_make(disco__ctx *ctx, void *stack_lo, size_t size,
                     void (*entry)(void *), void *arg)
{
    uintptr_t a = (uintptr_t)arg, f = (uintptr_t)entry;
    getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = stack_lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    /* makecontext passes int arguments: split the pointers. */
    makecontext(&ctx->uc, (void (*)(void))ucontext_entry, 4,
                (unsigned)(a >> 32), (unsigned)a, (unsigned)(f >> 32),
                (unsigned)f);
}

void disco__ctx_switch(disco__ctx *from, disco__ctx *to)
{
    swapcontext(&from->uc, &to->uc);
}

/* SPDX-License-Identifier: BSD-3-Clause */
/* Builds the first frame that the hand-written switches pop. */
#include <stdint.h>
#include <string.h>

#include "sched/context.h"

void disco__ctx_trampoline(void);

void disco__ctx_make(disco__ctx *ctx, void *stack_lo, size_t size,
                     void (*entry)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* 72-byte frame (see context_x86_64.S) placed so that rsp is 16-byte
     * aligned after the final ret into the trampoline: f[0..1] control
     * words, f[2..7] r15 r14 r13 r12 rbx rbp, f[8] return address. */
    uint64_t *f = (uint64_t *)(top - 88);
    memset(f, 0, 88);
    uint32_t mxcsr = 0x1f80;  /* all exceptions masked, round to nearest */
    uint16_t fcw = 0x037f;    /* x87 default */
    memcpy((char *)f, &mxcsr, sizeof(mxcsr));
    memcpy((char *)f + 4, &fcw, sizeof(fcw));
    f[4] = (uint64_t)(uintptr_t)arg;                    /* r13 */
    f[5] = (uint64_t)(uintptr_t)entry;                  /* r12 */
    f[8] = (uint64_t)(uintptr_t)disco__ctx_trampoline;  /* return address */
    ctx->sp = f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)entry;                   /* x19 */
    f[1] = (uint64_t)(uintptr_t)arg;                     /* x20 */
    f[11] = (uint64_t)(uintptr_t)disco__ctx_trampoline;  /* x30 */
    ctx->sp = f;
#else
#error "no hand-written context switch for this CPU: configure --with-context=ucontext"
#endif
}

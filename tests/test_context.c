/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The context switch on its own, without the scheduler: values survive in
 * callee-saved registers, each context keeps its own floating-point
 * rounding mode, the stack is ABI-aligned, and thousands of switches go
 * back and forth. Plain C printing TAP, so that tests/context-cross.sh can
 * also build it for aarch64 and run it under qemu.
 */
#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/context.h"

static disco__ctx main_ctx, co_ctx;
static long shared;
static int failures, test_no;

static void check(int ok, const char *what)
{
    printf("%s %d - %s\n", ok ? "ok" : "not ok", ++test_no, what);
    if (!ok)
        failures++;
}

/* Many values live across the switch: the compiler keeps some of them in
 * callee-saved registers, which the switch must preserve. */
static long mix(long a)
{
    long r1 = a * 3, r2 = a ^ 0x5a5a, r3 = a + 17, r4 = a * a, r5 = a - 99,
         r6 = a << 3, r7 = ~a, r8 = a * 7 + 1;
    double d1 = (double)a * 0.5, d2 = (double)a + 0.25;
    disco__ctx_switch(&co_ctx, &main_ctx);
    return r1 + r2 + r3 + r4 + r5 + r6 + r7 + r8 + (long)(d1 * 4) + (long)(d2 * 4);
}

static long mix_expected(long a)
{
    return a * 3 + (a ^ 0x5a5a) + a + 17 + a * a + a - 99 + (a << 3) + ~a +
           a * 7 + 1 + (long)((double)a * 0.5 * 4) + (long)(((double)a + 0.25) * 4);
}

static void coroutine(void *arg)
{
    long rounds = (long)(intptr_t)arg;
    /* ABI alignment of the first frame. */
    _Alignas(16) char probe[16];
    shared = ((uintptr_t)probe % 16 == 0) ? 1 : -1;
    disco__ctx_switch(&co_ctx, &main_ctx);

    /* This context rounds downwards; main keeps rounding to nearest. */
    fesetround(FE_DOWNWARD);
    disco__ctx_switch(&co_ctx, &main_ctx);
    shared = fegetround() == FE_DOWNWARD;
    disco__ctx_switch(&co_ctx, &main_ctx);
    fesetround(FE_TONEAREST);

    for (long i = 0; i < rounds; i++) {
        long got = mix(i);
        shared = got == mix_expected(i) ? i : -1;
        disco__ctx_switch(&co_ctx, &main_ctx);
    }
    shared = -2; /* finished */
    disco__ctx_switch(&co_ctx, &main_ctx);
    abort(); /* never resumed again */
}

int main(void)
{
    enum { ROUNDS = 10000 };
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    printf("1..5\n");
    disco__ctx_make(&co_ctx, stack, size, coroutine, (void *)(intptr_t)ROUNDS);

    disco__ctx_switch(&main_ctx, &co_ctx);
    check(shared == 1, "new context starts with a 16-byte aligned stack");

    disco__ctx_switch(&main_ctx, &co_ctx); /* it sets FE_DOWNWARD */
    check(fegetround() == FE_TONEAREST, "rounding mode of the switcher kept");
    disco__ctx_switch(&main_ctx, &co_ctx);
    check(shared == 1, "rounding mode of the other context kept");

    int ok = 1;
    for (long i = 0; i < ROUNDS; i++) {
        disco__ctx_switch(&main_ctx, &co_ctx); /* into mix(i) */
        disco__ctx_switch(&main_ctx, &co_ctx); /* back with its result */
        if (shared != i)
            ok = 0;
    }
    check(ok, "callee-saved values survive 20000 switches");
    disco__ctx_switch(&main_ctx, &co_ctx);
    check(shared == -2, "coroutine ran to its end");
    free(stack);
    return failures ? 1 : 0;
}

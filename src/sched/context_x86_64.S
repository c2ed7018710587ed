/* SPDX-License-Identifier: BSD-3-Clause */
/* Context switch for x86-64 System V. See context.h.
 *
 * Frame on a suspended stack, from the saved sp upwards:
 *   0: MXCSR (4 bytes)  4: x87 control word (2 bytes)  8: padding
 *  16: r15  24: r14  32: r13  40: r12  48: rbx  56: rbp  64: return address
 */
    .text
    .globl  disco__ctx_switch
    .hidden disco__ctx_switch
    .type   disco__ctx_switch, @function
    .p2align 4
disco__ctx_switch:          /* rdi = from, rsi = to */
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $16, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $16, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   disco__ctx_switch, .-disco__ctx_switch

/* First frame of a new context: disco__ctx_make leaves the entry function in
 * r12 and its argument in r13. rsp is 16-byte aligned here, as the ABI wants
 * before a call. The entry never returns; ud2 catches it if it does. */
    .globl  disco__ctx_trampoline
    .hidden disco__ctx_trampoline
    .type   disco__ctx_trampoline, @function
    .p2align 4
disco__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip      /* outermost frame: debuggers stop unwinding */
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   disco__ctx_trampoline, .-disco__ctx_trampoline

    .section .note.GNU-stack,"",@progbits

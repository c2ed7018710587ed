/* SPDX-License-Identifier: BSD-3-Clause */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disco/status.h"
#include "sched/sched.h"

#define ALTSTACK_SIZE (64 * 1024)

static struct sigaction previous_segv;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static DISCO__TLS void *altstack;

int disco__stack_map(disco__stack *s, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) & ~(page - 1);
    /* MAP_NORESERVE: only the pages a task touches cost memory. */
    char *base = mmap(NULL, size + DISCO__STACK_GUARD, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                      -1, 0);
    if (base == MAP_FAILED)
        return DISCO_ENOMEM;
    if (mprotect(base, DISCO__STACK_GUARD, PROT_NONE) != 0) {
        munmap(base, size + DISCO__STACK_GUARD);
        return DISCO_ENOMEM;
    }
    s->lo = base + DISCO__STACK_GUARD;
    s->size = size;
    return 0;
}

void disco__stack_unmap(disco__stack *s)
{
    munmap(s->lo - DISCO__STACK_GUARD, s->size + DISCO__STACK_GUARD);
}

static void write_str(const char *s) { (void)!write(2, s, strlen(s)); }

static void write_u64(uint64_t v)
{
    char buf[24], *p = buf + sizeof(buf);
    *--p = '\0';
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    write_str(p);
}

/* Async-signal-safe: only reads the running task and write(2)s. */
static void segv_handler(int sig, siginfo_t *si, void *uctx)
{
    disco__worker *w = disco__self();
    disco_task *t = w ? w->current : NULL;
    char *addr = si->si_addr;
    if (t && t->has_stack && addr >= t->stack.lo - DISCO__STACK_GUARD &&
        addr < t->stack.lo) {
        write_str("disco: stack overflow in task ");
        write_u64(t->id);
        if (t->name) {
            write_str(" '");
            write_str(t->name);
            write_str("'");
        }
        write_str(" (stack of ");
        write_u64(t->stack.size);
        write_str(" bytes; raise DISCO_STACK_SIZE or the task's stack_size)\n");
        /* Die of the fault itself: restore the default and return, so the
         * faulting instruction runs again and kills the process. */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    /* Not ours: hand it on as if we had never been installed. */
    if (previous_segv.sa_flags & SA_SIGINFO && previous_segv.sa_sigaction) {
        previous_segv.sa_sigaction(sig, si, uctx);
    } else if (previous_segv.sa_handler != SIG_DFL &&
               previous_segv.sa_handler != SIG_IGN) {
        previous_segv.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL);
    }
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
}

int disco__stack_guard_thread_init(void)
{
    pthread_once(&handler_once, install_handler);
    /* The fault happens with the task's stack exhausted: the handler needs
     * a stack of its own. */
    if (!(altstack = malloc(ALTSTACK_SIZE)))
        return DISCO_ENOMEM;
    stack_t ss = {.ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        free(altstack);
        altstack = NULL;
        return DISCO_ESYS;
    }
    return 0;
}

void disco__stack_guard_thread_fini(void)
{
    if (!altstack)
        return;
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(altstack);
    altstack = NULL;
}

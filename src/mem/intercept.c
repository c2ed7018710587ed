/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The wrappers that keep the registration cache honest: each call that
 * releases memory first invalidates the cache over the range, then runs the
 * real function, the next definition in symbol order (see cache.c for what
 * is covered and what escapes). They are exported from libdisco, so they
 * stand in for libc's in the whole process.
 *
 * The real functions are looked up on first use with dlsym(RTLD_NEXT).
 * dlsym may call malloc and free: a free that arrives while this thread is
 * looking up (before the real free is known) leaks its block; any other
 * call then fails with ENOSYS, as it does if the lookup fails.
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/compiler.h"
#include "mem/region.h"

/* TSan's own start-up maps memory through these wrappers before it can
 * run instrumented code, so they and what they call first are left alone;
 * the cache itself is reached only once something is registered (after
 * TSan is up). */
#define EXPORT __attribute__((visibility("default"), no_sanitize("thread")))
#define UNTRACED __attribute__((no_sanitize("thread")))

static DISCO__TLS bool looking_up;

UNTRACED __attribute__((noinline)) static void *look_up(void *_Atomic *slot,
                                                        const char *name)
{
    if (looking_up)
        return NULL;
    looking_up = true;
    void *f = dlsym(RTLD_NEXT, name);
    looking_up = false;
    atomic_store_explicit(slot, f, memory_order_release);
    return f;
}

/* Inline: every free in the process comes through here. */
UNTRACED static inline void *real(void *_Atomic *slot, const char *name)
{
    void *f = atomic_load_explicit(slot, memory_order_acquire);
    return f ? f : look_up(slot, name);
}

/* fn_name: the real name, with the wrapper's type. */
#define REAL(name)                                                             \
    static void *_Atomic real_##name;                                          \
    __typeof__(name) *fn_##name = (__typeof__(name) *)real(&real_##name, #name)

/* Whether any region exists: without one, nothing needs invalidating. */
UNTRACED static inline bool any_region(void) { return atomic_load(&disco__mem.nregions) != 0; }

/* Invalidates [addr, addr + len) unless no region can lie there. */
UNTRACED static void forget_range(const void *addr, size_t len)
{
    disco__mem_state *m = &disco__mem;
    uintptr_t a = (uintptr_t)addr, b = a + len < a ? UINTPTR_MAX : a + len;
    if (len && any_region() && b > atomic_load(&m->lo) && a < atomic_load(&m->hi))
        disco__mem_invalidate(a, b - a);
}

EXPORT int munmap(void *addr, size_t len)
{
    REAL(munmap);
    if (!fn_munmap)
        return errno = ENOSYS, -1;
    forget_range(addr, len);
    return fn_munmap(addr, len);
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    REAL(mremap);
    if (!fn_mremap)
        return errno = ENOSYS, MAP_FAILED;
    void *target = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        target = va_arg(ap, void *);
        va_end(ap);
        forget_range(target, new_len);
    }
    forget_range(old, old_len);
    return fn_mremap(old, old_len, new_len, flags, target);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(mmap);
    if (!fn_mmap)
        return errno = ENOSYS, MAP_FAILED;
    if (flags & MAP_FIXED)
        forget_range(addr, len);
    return fn_mmap(addr, len, prot, flags, fd, off);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
    REAL(madvise);
    if (!fn_madvise)
        return errno = ENOSYS, -1;
    if (advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE)
        forget_range(addr, len);
    return fn_madvise(addr, len, advice);
}

EXPORT void *sbrk(intptr_t increment)
{
    REAL(sbrk);
    if (!fn_sbrk)
        return errno = ENOSYS, (void *)-1;
    if (increment < 0) {
        uintptr_t end = (uintptr_t)fn_sbrk(0);
        forget_range((void *)(end - (uintptr_t)-increment), (uintptr_t)-increment);
    }
    return fn_sbrk(increment);
}

EXPORT int brk(void *addr)
{
    REAL(brk);
    REAL(sbrk);
    if (!fn_brk || !fn_sbrk)
        return errno = ENOSYS, -1;
    uintptr_t end = (uintptr_t)fn_sbrk(0);
    if ((uintptr_t)addr < end)
        forget_range(addr, end - (uintptr_t)addr);
    return fn_brk(addr);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* The sanitizers' allocator hooks (sanitizer/allocator_interface.h, which
 * GCC does not install). The free hook runs before the block is released. */
int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void *, size_t),
                                              void (*)(const volatile void *));
size_t __sanitizer_get_allocated_size(const volatile void *p);

static void on_malloc(const volatile void *p, size_t size)
{
    (void)p;
    (void)size;
}

UNTRACED static void on_free(const volatile void *p)
{
    if (p)
        forget_range((const void *)p, __sanitizer_get_allocated_size(p));
}

__attribute__((constructor)) static void install_hooks(void)
{
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
EXPORT void free(void *p)
{
    REAL(free);
    if (!fn_free || !p)
        return; /* (leaks what the lookup itself frees) */
    if (any_region()) /* most processes have none: the block is not measured */
        forget_range(p, malloc_usable_size(p));
    fn_free(p);
}

EXPORT void *realloc(void *p, size_t size)
{
    REAL(realloc);
    if (!fn_realloc)
        return errno = ENOSYS, NULL;
    if (p && any_region())
        forget_range(p, malloc_usable_size(p));
    return fn_realloc(p, size);
}
#endif

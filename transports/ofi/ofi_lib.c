/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libfabric, loaded when the ofi transport starts, not linked. Linking it
 * would load it, and the providers' own libraries (psm, psm2), into every
 * disco process: their constructors install signal handlers (a worker then
 * no longer dies of SIGTERM) and they cost memory in every idle worker,
 * while most processes never select ofi (it is not in DISCO_TRANSPORT's
 * auto). Only five functions of libfabric are real exported symbols; the
 * rest of its API is inline calls through the objects these return. They
 * are defined here, forwarding to the loaded library, with the symbol
 * versions of the header this is compiled against.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "transports/ofi/ofi.h"

#define FABRIC_SONAME "libfabric.so.1"

static struct {
    pthread_once_t once;
    char why[160]; /* empty when loaded */
    int (*getinfo)(uint32_t, const char *, const char *, uint64_t, const struct fi_info *,
                   struct fi_info **);
    void (*freeinfo)(struct fi_info *);
    struct fi_info *(*dupinfo)(const struct fi_info *);
    int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
    const char *(*strerror)(int);
} L = {.once = PTHREAD_ONCE_INIT};

/* The newest version of name the library has (the header's). */
static void *sym(void *h, const char *name)
{
    void *p = dlvsym(h, name, "FABRIC_1.3");
    return p ? p : dlsym(h, name);
}

static void load(void)
{
    void *h = dlopen(FABRIC_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(L.why, sizeof(L.why), "ofi: cannot load %s: %s", FABRIC_SONAME, dlerror());
        return;
    }
    L.getinfo = sym(h, "fi_getinfo");
    L.freeinfo = sym(h, "fi_freeinfo");
    L.dupinfo = sym(h, "fi_dupinfo");
    L.fabric = sym(h, "fi_fabric");
    L.strerror = sym(h, "fi_strerror");
    if (!L.getinfo || !L.freeinfo || !L.dupinfo || !L.fabric || !L.strerror)
        snprintf(L.why, sizeof(L.why), "ofi: %s lacks the functions of libfabric 1.x",
                 FABRIC_SONAME);
    /* h stays open: what it returns lives as long as the process. */
}

int ofi_lib_load(void)
{
    pthread_once(&L.once, load);
    return L.why[0] ? disco_error_set(DISCO_ENOSYS, "%s", L.why) : 0;
}

/* Called only after ofi_lib_load succeeded (init does it first). */
int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags,
               const struct fi_info *hints, struct fi_info **info)
{
    return L.getinfo(version, node, service, flags, hints, info);
}

void fi_freeinfo(struct fi_info *info) { L.freeinfo(info); }

struct fi_info *fi_dupinfo(const struct fi_info *info) { return L.dupinfo(info); }

int fi_fabric(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
    return L.fabric(attr, fabric, context);
}

const char *fi_strerror(int errnum)
{
    return L.strerror ? L.strerror(errnum) : "libfabric not loaded";
}

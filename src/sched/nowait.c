/* SPDX-License-Identifier: BSD-3-Clause */
/* No-wait regions (see nowait.h). */
#include <stdio.h>
#include <stdlib.h>

#include "disco/error.h"
#include "sched/nowait.h"

DISCO__TLS const char *disco__nowait_fn;

int disco__nowait_refuse(const char *what)
{
    return disco_error_set(DISCO_ENOWAIT, "'%s' is a no-wait function: it cannot wait (%s)",
                           disco__nowait_fn, what);
}

void disco__nowait_abort(const char *what)
{
    fprintf(stderr, "disco: '%s' is a no-wait function but waited (%s); no-wait "
                    "functions must not wait: aborting\n", disco__nowait_fn, what);
    abort();
}

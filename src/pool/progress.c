/* SPDX-License-Identifier: BSD-3-Clause */
/* pmap's built-in progress bar (ProgressMeter's progress_pmap). */
#include <stdio.h>
#include <unistd.h>

#include "pool/pmap.h"

void disco__progress_bar(const disco_pmap_progress *p, bool last)
{
    if (!isatty(STDERR_FILENO))
        return;
    enum { WIDTH = 40 };
    size_t fill = p->total ? p->done * WIDTH / p->total : WIDTH;
    char bar[WIDTH + 1];
    for (size_t i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[WIDTH] = '\0';
    double eta = p->done ? p->elapsed * (double)(p->total - p->done) / (double)p->done : 0;
    fprintf(stderr, "\rpmap [%s] %zu/%zu  retries %zu  %.1fs  ETA %.1fs%s", bar, p->done,
            p->total, p->retries, p->elapsed, eta, last ? "\n" : "");
    fflush(stderr);
}

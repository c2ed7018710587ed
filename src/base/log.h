/* SPDX-License-Identifier: BSD-3-Clause */
/* Debug messages: printed to stderr when DISCO_DEBUG is set (to anything but
 * "0"), prefixed with the process's disco pid. Off, a call costs one load. */
#ifndef DISCO_BASE_LOG_H
#define DISCO_BASE_LOG_H

#include <stdbool.h>

bool disco__debug_on(void);

void disco__debug_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define disco__debug(...)                                                      \
    do {                                                                       \
        if (disco__debug_on())                                                 \
            disco__debug_print(__VA_ARGS__);                                   \
    } while (0)

#endif

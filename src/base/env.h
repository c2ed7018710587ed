/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef DISCO_BASE_ENV_H
#define DISCO_BASE_ENV_H

/* Integer value of environment variable name, or def when unset or not a
 * number (a warning is printed for the latter). Accepts K/M/G suffixes. */
long disco__env_long(const char *name, long def);

#endif

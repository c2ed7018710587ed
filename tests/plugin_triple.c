/* SPDX-License-Identifier: BSD-3-Clause */
/* A plugin for test_rref: one remote function, registered as it loads. Its
 * disco symbols resolve against the program that loads it. */
#include "disco.h"

int plugin_triple(const disco_value *args, size_t n, disco_value *result);

int plugin_triple(const disco_value *args, size_t n, disco_value *result)
{
    if (n != 1 || args[0].type != DISCO_I64)
        return disco_throw(DISCO_EINVAL, "plugin_triple takes one integer");
    *result = disco_i64(3 * args[0].i);
    return 0;
}
DISCO_FUNCTION(plugin_triple)

/* SPDX-License-Identifier: BSD-3-Clause */
#include "disco/status.h"

const char *disco_strerror(int status)
{
    switch (status) {
#define X(name, value, msg)                                                    \
    case DISCO_##name:                                                         \
        return msg;
        DISCO_STATUS_MAP(X)
#undef X
    }
    return "unknown error";
}

const char *disco_status_name(int status)
{
    switch (status) {
#define X(name, value, msg)                                                    \
    case DISCO_##name:                                                         \
        return "DISCO_" #name;
        DISCO_STATUS_MAP(X)
#undef X
    }
    return "DISCO_UNKNOWN";
}

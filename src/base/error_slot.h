/* SPDX-License-Identifier: BSD-3-Clause */
/* Where the "last error" lives. The scheduler defines it: inside a task the
 * slot belongs to the task (it migrates between threads with it), outside any
 * task to the calling thread. */
#ifndef DISCO_BASE_ERROR_SLOT_H
#define DISCO_BASE_ERROR_SLOT_H

#include "disco/error.h"

disco_error **disco__error_slot(void);

#endif

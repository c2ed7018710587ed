/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef DISCO_BASE_THREAD_H
#define DISCO_BASE_THREAD_H

/* Starts fn(arg) on a detached helper thread with every signal blocked (so
 * signals meant for the program never land on it). Returns 0 or the
 * pthread_create error number. */
int disco__thread_start_detached(void *(*fn)(void *), void *arg);

#endif

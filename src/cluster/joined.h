/* SPDX-License-Identifier: BSD-3-Clause */
/* A step every new worker goes through before disco_addprocs hands it out. */
#ifndef DISCO_CLUSTER_JOINED_H
#define DISCO_CLUSTER_JOINED_H

/* If set, run by the master on the n workers that just joined, before
 * disco_addprocs returns (plugins loaded everywhere reach them so: see
 * src/rref/everywhere.c). A failure fails the addprocs. */
extern int (*disco__workers_joined)(const int *pids, int n);

#endif

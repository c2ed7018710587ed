/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Test cases that are the same test over any transport: a transport's test
 * runs one as a case of its own (test_tcp's test_interrupt calls
 * xport_case_interrupt(&disco__tcp_ops, NULL)), so that a bug fails the
 * same case by the same name in each. Every case opens its endpoints with
 * ops->init(NULL, arg) and closes them; what differs between transports
 * stays in each one's own test.
 */
#ifndef DISCO_TESTS_XPORT_CASES_H
#define DISCO_TESTS_XPORT_CASES_H

#include "core/transport.h"
#include "xport_ep.h"

/* How a case connects a to b: a's end returned, b's in *bc. The cases
 * that take one use connect_pair when it is NULL. */
typedef disco_conn *xport_connect_fn(ep *a, ep *b, disco_conn **bc);

/* Two threads send on one connection: each one's order is kept, every
 * send completes once. */
void xport_case_two_threads_send(const disco_transport_ops *ops, const char *arg,
                                 xport_connect_fn *connect);
/* Either end closes: the other sees a clean close, once; no callback
 * follows conn_close. */
void xport_case_peer_close(const disco_transport_ops *ops, const char *arg,
                           xport_connect_fn *connect);
/* on_recv queues a reply and closes its connection. */
void xport_case_close_inside_callback(const disco_transport_ops *ops, const char *arg);
/* conn_close while another thread runs callbacks for that connection. */
void xport_case_close_while_progress_runs(const disco_transport_ops *ops, const char *arg,
                                          xport_connect_fn *connect);
/* interrupt wakes a progress blocked forever, and is not lost before one;
 * a second progress at once is refused. */
void xport_case_interrupt(const disco_transport_ops *ops, const char *arg);
/* Completions owed wake a progress blocked forever. */
void xport_case_send_wakes_progress(const disco_transport_ops *ops, const char *arg);
/* The wait fd: quiet when armed and idle, readable for a message or an
 * interrupt. */
void xport_case_wait_fd(const disco_transport_ops *ops, const char *arg);

#endif

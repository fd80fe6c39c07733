/* SPDX-License-Identifier: MIT */
#ifndef SG_SOCKJS_IO_H
#define SG_SOCKJS_IO_H

/* SockJS xhr sessions (xhr_streaming, xhr polling, xhr_send). A session
 * belongs to the worker where it was opened; its later requests may reach
 * any worker, which hands the connection (socket and TLS state) over to
 * the owner, so all of a session's I/O runs on one loop. */

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "session.h"
#include "conn.h"
#include "stompgate/sockjs.h"

/* Sets up worker id's inbox on loop. Call from the main thread for each
 * worker before any thread runs. 0 or a libuv error. */
int sg_sockjs_worker_init(uv_loop_t *loop, int id, sg_session_ctx_t *ctx);

/* Hands a whole request (bytes[0..len): head and body, copied) for the
 * xhr transport route rt, read on loop, to the worker owning the session,
 * with the exported connection x (taken on success; the caller then
 * closes its handle without writing). Returns 0; 404 for an xhr_send to
 * no session; or a negative error. */
int sg_sockjs_dispatch(uv_loop_t *loop, const sg_sockjs_route_t *rt, const char *bytes,
                       size_t len, const sg_conn_export_t *x, const char *peer);

/* A random value for /info. */
uint32_t sg_sockjs_entropy(void);


#endif

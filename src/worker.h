/* SPDX-License-Identifier: MIT */
#ifndef SG_WORKER_H
#define SG_WORKER_H

/* A worker: one thread, one libuv loop, its own listener on the shared
 * port, and its relay's own state (in shared mode its pools and fan-out), so
 * nothing on the hot path is shared between threads. */

#include <stdatomic.h>
#include <uv.h>

#include "config.h"
#include "listener.h"
#include "session.h"

typedef struct sg_worker {
  int id;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wake;  /* carries commands from the main thread */
  atomic_int cmds;  /* enum sg_worker_cmd bits not yet carried out */
  sg_listener_t listener;
  sg_listener_t stomp_listener; /* --stomp-listen: STOMP over TCP or TLS */
  sg_session_ctx_t ctx;
  int running;
} sg_worker_t;

/* Creates cfg->workers workers and binds their listeners (all on one
 * port, and with --stomp-listen all on one STOMP port). On success *out
 * holds them, *port the port and *stomp_port the STOMP port (0 without
 * one). A negative libuv error when a listener cannot bind (nothing is
 * left open then); *stomp_port is -1 if that was the STOMP one. */
int sg_workers_start(sg_worker_t **out, const sg_config_t *cfg, int *port, int *stomp_port);
/* Starts accepting and the workers' threads. 0 or a libuv error. */
int sg_workers_run(sg_worker_t *w, const sg_config_t *cfg);
enum sg_worker_cmd {
  SG_WORKER_STOP_LISTENING = 1, /* close the listener (drain) */
  SG_WORKER_DRAIN = 2,          /* tell every session to finish */
  SG_WORKER_STOP = 4,           /* stop the loop; the call joins the threads */
};

/* Has every worker carry out cmd on its own thread. SG_WORKER_STOP returns
 * once the threads have ended. */
void sg_workers_command(sg_worker_t *w, const sg_config_t *cfg, int cmd);

#endif

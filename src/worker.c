/* SPDX-License-Identifier: MIT */
#include "worker.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "events_pub.h"
#include "log.h"
#include "relay.h"
#include "sockjs.h"
#include "stomp_tcp.h"
#include "stompgate/container.h"
#include "ws.h"

static void wake_cb(uv_async_t *a) {
  sg_worker_t *w = a->data;
  int cmds = atomic_exchange(&w->cmds, 0);
  if (cmds & (SG_WORKER_STOP_LISTENING | SG_WORKER_STOP)) {
    sg_listener_close(&w->listener);
    sg_listener_close(&w->stomp_listener);
  }
  if (cmds & SG_WORKER_DRAIN) sg_session_drain_all();
  if (cmds & SG_WORKER_STOP) {
    if (w->ctx.relay->worker_stop) w->ctx.relay->worker_stop(&w->ctx);
    uv_stop(&w->loop);
  }
}

static void worker_main(void *arg) {
  sg_worker_t *w = arg;
  /* Per-thread state of the layers (write batching, deferred closes). */
  if (sg_ws_loop_init(&w->loop) != 0 || sg_amqp_loop_init(&w->loop) != 0 ||
      sg_stomp_tcp_loop_init(&w->loop) != 0) {
    sg_log_error("worker %d cannot start", w->id);
    return;
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  sg_session_thread_done();
  sg_ws_thread_done();
}

/* Everything up to the listener, from the main thread before the worker's
 * thread exists. */
static int worker_init(sg_worker_t *w, int id, const sg_config_t *cfg, int port, int stomp_port,
                       int *stomp_failed) {
  memset(w, 0, sizeof(*w));
  w->id = id;
  int r = uv_loop_init(&w->loop);
  if (r) return r;
  w->ctx.cfg = cfg;
  w->ctx.worker = id;
  w->ctx.relay = sg_relay_of(cfg->mode);
  if (w->ctx.relay->worker_start && (r = w->ctx.relay->worker_start(&w->ctx, &w->loop)) != 0)
    goto fail_loop;
  if ((r = uv_async_init(&w->loop, &w->wake, wake_cb)) != 0) goto fail_loop;
  w->wake.data = w;
  if (cfg->sockjs && (r = sg_sockjs_worker_init(&w->loop, id, &w->ctx)) != 0) goto fail_async;
  if ((r = sg_listener_start(&w->listener, &w->loop, &w->ctx, port)) != 0) goto fail_async;
  if (cfg->stomp_listen_host &&
      (r = sg_listener_bind(&w->stomp_listener, &w->loop, &w->ctx, cfg->stomp_listen_host,
                            stomp_port ? stomp_port : cfg->stomp_listen_port,
                            sg_stomp_tcp_accept)) != 0) {
    *stomp_failed = 1;
    sg_listener_close(&w->listener);
    goto fail_async;
  }
  if (cfg->events_exchange && (w->ctx.events = sg_events_pub_start(&w->loop, cfg, id)) == NULL)
    sg_log_warn("worker %d: session events cannot start: out of memory", id);
  return 0;
fail_async:
  uv_close((uv_handle_t *)&w->wake, NULL);
  uv_run(&w->loop, UV_RUN_NOWAIT);
fail_loop:
  uv_loop_close(&w->loop);
  return r;
}

int sg_workers_start(sg_worker_t **out, const sg_config_t *cfg, int *port, int *stomp_port) {
  int n = cfg->workers;
  sg_worker_t *ws = calloc((size_t)n, sizeof(*ws));
  if (ws == NULL) return UV_ENOMEM;
  int r = 0, i, stomp_failed = 0;
  *port = 0;
  *stomp_port = 0;
  for (i = 0; i < n; i++) {
    if ((r = worker_init(&ws[i], i, cfg, *port, *stomp_port, &stomp_failed)) != 0) break;
    if (i == 0) *port = sg_listener_port(&ws[0].listener);
    if (i == 0 && cfg->stomp_listen_host) *stomp_port = sg_listener_port(&ws[0].stomp_listener);
  }
  if (r) {
    if (stomp_failed) *stomp_port = -1;
    for (int k = 0; k < i; k++) {
      sg_listener_close(&ws[k].listener);
      sg_listener_close(&ws[k].stomp_listener);
      uv_close((uv_handle_t *)&ws[k].wake, NULL);
      uv_run(&ws[k].loop, UV_RUN_NOWAIT);
      uv_loop_close(&ws[k].loop);
    }
    free(ws);
    return r;
  }
  *out = ws;
  return 0;
}

int sg_workers_run(sg_worker_t *ws, const sg_config_t *cfg) {
  for (int i = 0; i < cfg->workers; i++) {
    int r = sg_listener_listen(&ws[i].listener);
    if (r == 0 && cfg->stomp_listen_host) r = sg_listener_listen(&ws[i].stomp_listener);
    if (r) return r;
  }
  for (int i = 0; i < cfg->workers; i++) {
    if (uv_thread_create(&ws[i].thread, worker_main, &ws[i]) != 0) {
      sg_log_error("cannot start worker thread %d", i);
      continue;
    }
    ws[i].running = 1;
  }
  return 0;
}

void sg_workers_command(sg_worker_t *ws, const sg_config_t *cfg, int cmd) {
  for (int i = 0; i < cfg->workers; i++) {
    if (!ws[i].running) continue;
    atomic_fetch_or(&ws[i].cmds, cmd);
    uv_async_send(&ws[i].wake);
  }
  if (!(cmd & SG_WORKER_STOP)) return;
  for (int i = 0; i < cfg->workers; i++)
    if (ws[i].running) uv_thread_join(&ws[i].thread);
  /* The loops still hold the sessions that were open; the process exits
   * next, so they stay as they are (and reachable, for leak checkers). */
}

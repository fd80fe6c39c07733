/* SPDX-License-Identifier: MIT */
/* stompgate: relays STOMP over WebSocket to RabbitMQ over AMQP 0-9-1. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "app_setup.h"
#include "config.h"
#include "log.h"
#include "session.h"
#include "sg_config.h"
#include "worker.h"

/* The main thread's loop only watches signals and runs start-up tasks; the
 * workers' loops carry the sessions. */
static uv_signal_t sig_term, sig_int;

static void signal_cb(uv_signal_t *h, int signum) {
  sg_log_info("signal %d: stopping (%zu sessions open)", signum, sg_session_count());
  uv_stop(h->loop);
}

int main(int argc, char **argv) {
  static sg_config_t cfg;
  static sg_worker_t *workers;
  int r = sg_config_parse(&cfg, argc, argv);
  if (r != 0) {
    sg_config_free(&cfg);
    return r == 1 ? 0 : 2;
  }
  sg_log_set_level(cfg.log_level);
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t *loop = uv_default_loop();
  int port;
  r = sg_workers_start(&workers, &cfg, &port);
  if (r) {
    sg_log_error("cannot listen on %s:%d: %s", cfg.listen_host, cfg.listen_port, uv_strerror(r));
    sg_config_free(&cfg);
    return 1;
  }
  r = sg_app_setup_start(loop, &cfg);
  if (r) sg_log_warn("cannot start declaring the application exchange: %s", uv_strerror(r));
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_start(&sig_term, signal_cb, SIGTERM);
  uv_signal_start(&sig_int, signal_cb, SIGINT);
  sg_log_info("stompgate %s listening on ws://%s:%d%s, broker %s:%d vhost %s, mode %s, %d worker%s",
              SG_VERSION, cfg.listen_host, port, cfg.ws_path, cfg.broker.host, cfg.broker.port,
              cfg.broker.vhost, cfg.mode == SG_MODE_SHARED ? "shared" : "per-session",
              cfg.workers, cfg.workers == 1 ? "" : "s");
  uv_run(loop, UV_RUN_DEFAULT);
  sg_workers_stop(workers, &cfg);
  sg_log_info("stopped");
  return 0;
}

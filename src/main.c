/* SPDX-License-Identifier: MIT */
/* stompgate: relays STOMP over WebSocket to RabbitMQ over AMQP 0-9-1. */
#include <errno.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "access.h"
#include "admin.h"
#include "admission.h"
#include "app_setup.h"
#include "broker.h"
#include "config.h"
#include "log.h"
#include "probe.h"
#include "relay.h"
#include "session.h"
#include "sg_config.h"
#include "tls.h"
#include "stompgate/auth.h"
#include "worker.h"

/* After the grace period, sessions get a little longer to send the
 * receipts they owe before the process exits regardless. */
#define DRAIN_HARD_LIMIT_MS 10000
#define DRAIN_POLL_MS 50

/* The main thread's loop watches signals, serves the admin endpoint, runs
 * the broker probe and start-up tasks, and steers the drain; the workers'
 * loops carry the sessions. */
static sg_config_t cfg;
static sg_worker_t *workers;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t drain_timer, drain_poll;
static int draining, sessions_told;
static uint64_t hard_deadline;

static void finish(uv_loop_t *loop) {
  sg_admin_stop();
  sg_probe_stop();
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&sig_hup, NULL);
  uv_close((uv_handle_t *)&drain_timer, NULL);
  uv_close((uv_handle_t *)&drain_poll, NULL);
  uv_stop(loop);
}

static void tell_sessions(uv_loop_t *loop) {
  if (sessions_told) return;
  sessions_told = 1;
  sg_log_info("drain: closing %zu sessions", sg_session_count());
  hard_deadline = uv_now(loop) + DRAIN_HARD_LIMIT_MS;
  sg_workers_command(workers, &cfg, SG_WORKER_DRAIN);
}

static void drain_timer_cb(uv_timer_t *t) { tell_sessions(t->loop); }

static void drain_poll_cb(uv_timer_t *t) {
  if (sg_session_count() == 0) {
    sg_log_info("drain: all sessions closed");
    finish(t->loop);
  } else if (sessions_told && uv_now(t->loop) >= hard_deadline) {
    sg_log_warn("drain: %zu sessions still open after %d ms, exiting", sg_session_count(),
                DRAIN_HARD_LIMIT_MS);
    finish(t->loop);
  }
}

/* SIGTERM drains: readiness turns false, the listeners close, open
 * sessions keep running for the grace period and are then closed with an
 * ERROR after the receipts they owe. SIGINT does the same with its own
 * (by default zero) grace period; a second signal skips what is left. */
static void signal_cb(uv_signal_t *h, int signum) {
  uv_loop_t *loop = h->loop;
  if (draining) {
    sg_log_info("signal %d: closing sessions now", signum);
    uv_timer_stop(&drain_timer);
    tell_sessions(loop);
    return;
  }
  draining = 1;
  uint64_t grace = signum == SIGINT ? cfg.drain_timeout_int_ms : cfg.drain_timeout_ms;
  sg_log_info("signal %d: draining %zu sessions (grace %llu ms)", signum, sg_session_count(),
              (unsigned long long)grace);
  sg_admit_set_draining(1);
  sg_workers_command(workers, &cfg, SG_WORKER_STOP_LISTENING);
  uv_timer_start(&drain_poll, drain_poll_cb, 0, DRAIN_POLL_MS);
  if (grace == 0) tell_sessions(loop);
  else uv_timer_start(&drain_timer, drain_timer_cb, grace, 0);
}

/* SIGHUP reloads the TLS files and the users file; open sessions keep the
 * context and permissions they started with, new ones get the new ones. */
static void sighup_cb(uv_signal_t *h, int signum) {
  (void)h, (void)signum;
  int u = sg_access_reload();
  if (u == 0) sg_log_info("SIGHUP: users file reloaded");
  else if (u < 0) sg_log_error("SIGHUP: users file reload failed, keeping the users in use");
  if (!sg_tls_enabled()) {
    if (u > 0) sg_log_info("SIGHUP: no TLS certificates to reload");
    return;
  }
  if (sg_tls_reload(&cfg) == 0) sg_log_info("SIGHUP: TLS certificates reloaded");
  else sg_log_error("SIGHUP: TLS reload failed, keeping the certificates in use");
}

/* Each client takes a descriptor, and in per-session mode so does its
 * broker connection: the soft limit a shell starts with (often 1024) would
 * refuse sessions long before memory runs short. Raised to the hard limit,
 * which only a privileged process can raise. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    sg_log_warn("cannot read the open-files limit: %s", strerror(errno));
    return;
  }
  rlim_t soft = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      sg_log_warn("cannot raise the open-files limit from %llu to %llu: %s",
                  (unsigned long long)soft, (unsigned long long)rl.rlim_max, strerror(errno));
      return;
    }
  }
  sg_log_info("open-files limit %llu (was %llu; hard limit %llu)",
              (unsigned long long)rl.rlim_cur, (unsigned long long)soft,
              (unsigned long long)rl.rlim_max);
}

/* --hash-password: one line from standard input (so the password stays
 * out of the process list and shell history) becomes a users-file hash. */
static int hash_password(void) {
  char pw[1024], out[256];
  if (fgets(pw, sizeof(pw), stdin) == NULL) {
    fprintf(stderr, "stompgate: --hash-password reads the password on standard input\n");
    return 2;
  }
  size_t n = strlen(pw);
  if (n && pw[n - 1] == '\n') n--;
  if (n && pw[n - 1] == '\r') n--;
  pw[n] = '\0';
  int r = n == 0 ? -1 : sg_password_hash(pw, n, SG_PBKDF2_DEFAULT_ITER, out, sizeof(out));
  memset(pw, 0, sizeof(pw));
  if (r != 0) {
    fprintf(stderr, "stompgate: %s\n", n == 0 ? "the password is empty" : "cannot hash the password");
    return 2;
  }
  printf("%s\n", out);
  return 0;
}

int main(int argc, char **argv) {
  /* Broker logins run on the thread pool and may still be in a TLS
   * handshake when the process exits: OpenSSL must not tear its global
   * state down under them from an exit handler. */
  OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
  int r = sg_config_parse(&cfg, argc, argv);
  if (r == SG_CONFIG_HASH_PASSWORD) {
    sg_config_free(&cfg);
    return hash_password();
  }
  if (r != 0) {
    sg_config_free(&cfg);
    return r == 1 ? 0 : 2;
  }
  sg_log_set_level(cfg.log_level);
  sg_log_set_format(cfg.log_json);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  /* Every broker login waits on a thread-pool thread for a few round trips
   * to the broker; libuv's default of 4 threads caps how many sessions can
   * be logging in at once, and so the connect rate in per-session mode. */
  setenv("UV_THREADPOOL_SIZE", "16", 0);
  /* glibc gives each thread that allocates a malloc arena of its own, up to
   * eight per core; the thread pool's logins would add one per pool thread,
   * each keeping what it once held. The main thread and every worker keep
   * theirs; the pool threads share the remaining two. */
  mallopt(M_ARENA_MAX, cfg.workers + 3);
  /* Unusable certificate files are a configuration error, reported before
   * anything listens. */
  if (sg_tls_init(&cfg) != 0 || sg_access_init(&cfg) != 0) {
    sg_config_free(&cfg);
    return 2;
  }
  sg_amqp_set_link((unsigned)cfg.broker_heartbeat_s, (int)cfg.broker_frame_max,
                   cfg.broker_output_limit);
  sg_amqp_set_session_sharing(cfg.session_link_max, cfg.session_link_window_ms);
  if (sg_amqp_set_nodes(cfg.brokers, cfg.nbrokers) != 0 ||
      sg_amqp_set_tls(cfg.broker.tls, cfg.broker_ca, cfg.broker_tls_verify) != 0) {
    sg_log_error("cannot set up the broker links (out of memory or TLS initialisation)");
    sg_config_free(&cfg);
    return 1;
  }

  uv_loop_t *loop = uv_default_loop();
  if (cfg.admin_host != NULL) {
    if ((r = sg_admin_start(loop, &cfg)) != 0) {
      sg_log_error("cannot listen on admin %s:%d: %s", cfg.admin_host, cfg.admin_port,
                   uv_strerror(r));
      sg_config_free(&cfg);
      return 1;
    }
    sg_probe_start(loop, &cfg);
  }
  r = sg_app_setup_start(loop, &cfg);
  if (r) sg_log_warn("cannot start declaring the application exchange: %s", uv_strerror(r));
  int port, stomp_port;
  r = sg_workers_start(&workers, &cfg, &port, &stomp_port);
  if (r && stomp_port < 0) {
    sg_log_error("cannot listen for STOMP on %s:%d: %s", cfg.stomp_listen_host,
                 cfg.stomp_listen_port, uv_strerror(r));
    sg_config_free(&cfg);
    return 1;
  }
  if (r) {
    sg_log_error("cannot listen on %s:%d: %s", cfg.listen_host, cfg.listen_port, uv_strerror(r));
    sg_config_free(&cfg);
    return 1;
  }
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_hup);
  uv_timer_init(loop, &drain_timer);
  uv_timer_init(loop, &drain_poll);
  uv_signal_start(&sig_term, signal_cb, SIGTERM);
  uv_signal_start(&sig_int, signal_cb, SIGINT);
  uv_signal_start(&sig_hup, sighup_cb, SIGHUP);
  if (cfg.admin_host)
    sg_log_info("admin endpoint on http://%s:%d (/healthz /readyz /metrics)", cfg.admin_host,
                cfg.admin_port);
  sg_log_info("stompgate %s listening on %s://%s:%d%s, broker %s://%s:%d vhost %s, mode %s%s, "
              "%d worker%s",
              SG_VERSION, sg_tls_enabled() ? "wss" : "ws", cfg.listen_host, port, cfg.ws_path,
              cfg.broker.tls ? "amqps" : "amqp", cfg.broker.host, cfg.broker.port,
              cfg.broker.vhost, sg_relay_of(cfg.mode)->name,
              cfg.auth == SG_AUTH_JWT ? " (auth jwt)" : cfg.auth == SG_AUTH_FILE ? " (auth file)" : "",
              cfg.workers, cfg.workers == 1 ? "" : "s");
  if (cfg.stomp_listen_host)
    sg_log_info("STOMP over %s listening on %s://%s:%d", cfg.stomp_tls ? "TLS" : "TCP",
                cfg.stomp_tls ? "stomp+ssl" : "stomp", cfg.stomp_listen_host, stomp_port);
  for (size_t i = 1; i < cfg.nbrokers; i++)
    sg_log_info("broker node %zu: %s:%d", i + 1, cfg.brokers[i].host, cfg.brokers[i].port);
  if ((r = sg_workers_run(workers, &cfg)) != 0) {
    sg_log_error("cannot listen on %s:%d: %s", cfg.listen_host, port, uv_strerror(r));
    return 1;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  sg_workers_command(workers, &cfg, SG_WORKER_STOP);
  sg_log_info("stopped");
  /* The workers' loops still hold whatever was open; cfg and they stay
   * reachable until exit. */
  return 0;
}

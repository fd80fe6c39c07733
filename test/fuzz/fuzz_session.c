/* SPDX-License-Identifier: MIT */
/* A whole session: the input is what a client sends over TCP (the HTTP
 * upgrade, then WebSocket frames carrying STOMP; or, on the STOMP port,
 * STOMP frames straight on TCP), the gateway runs as in
 * production (listener, ws, session, broker link, in shared mode the pool
 * and fan-out), and the broker is fake_broker.c in the same loop.
 *
 * Input layout: byte 0 bit 0 picks shared mode (else per-session), bit 1
 * half-closes the client before it goes, bit 2 drains the sessions (as at
 * SIGTERM) once the stream is handled, bit 3 has the broker block
 * publishing, bit 4 picks a per-session gateway with 10 ms timeouts and
 * heart-beats and lets it run 60 ms before the client goes, so that its
 * timers fire (those inputs repeat less exactly), bit 5 connects to that
 * gateway's STOMP port (--stomp-listen) instead of its WebSocket one;
 * byte 1 is the rest of the fake broker's script (enum
 * fb_fault bits) and byte 2 its argument; bytes 3-4 seed the
 * sizes of the pieces the stream is written in, so that the gateway sees
 * partial heads, frames and messages; the rest is the stream.
 *
 * Per input: connect, write the pieces, run the loop until the gateway has
 * closed the connection or nothing moves any more, close the client, then
 * run the loop until every session and every private broker connection is
 * gone. A session that never ends is reported as a crash; under
 * LeakSanitizer whatever it did not free shows up with the input. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "broker.h"
#include "config.h"
#include "fake_broker.h"
#include "fanout.h"
#include "fuzz.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "relay.h"
#include "session.h"
#include "stomp_tcp.h"
#include "ws.h"

#define HEADER_LEN 5
#define MAX_PIECES 64
#define QUIET_ROUNDS 4      /* loop turns with nothing happening that count as done */
#define SETTLE_CAP_MS 500   /* the longest a stream is given to be handled */
#define FREE_CAP_MS 5000    /* the longest a session may take to end once the client went */
#define POOL_USER "sgpool"
#define TIMERS_RUN_MS 60    /* how long a gateway with short timeouts is left to run */

static uv_loop_t loop;
static uv_timer_t guard;
static sg_config_t cfg_ps, cfg_sh, cfg_tm;
static sg_session_ctx_t ctx_ps, ctx_sh, ctx_tm;
static sg_listener_t lis_ps, lis_sh, lis_tm;
static int port_ps, port_sh, port_tm;
/* The same gateways' STOMP ports. */
static sg_listener_t st_ps, st_sh, st_tm;
static int sport_ps, sport_sh, sport_tm;

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  int connected, failed, eof, closed;
  unsigned writes; /* in flight */
  unsigned activity;
} client_t;

static client_t cl;

static uint32_t rng_next(uint32_t *s) {
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13, x ^= x >> 17, x ^= x << 5;
  return *s = x;
}

static void guard_cb(uv_timer_t *t) { (void)t; }

static void load_config(sg_config_t *cfg, const char *mode, int broker_port, int timeout_ms) {
  char broker[128], modearg[64], hs[64], cn[64], hb[64];
  snprintf(broker, sizeof(broker), "--broker=amqp://%s:pw@127.0.0.1:%d/",
           strcmp(mode, "shared") == 0 ? POOL_USER : "guest", broker_port);
  snprintf(modearg, sizeof(modearg), "--mode=%s", mode);
  snprintf(hs, sizeof(hs), "--handshake-timeout=%d", timeout_ms);
  snprintf(cn, sizeof(cn), "--connect-timeout=%d", timeout_ms);
  snprintf(hb, sizeof(hb), "--heartbeat-min=%d", timeout_ms);
  /* Small limits so that every limit is reached by short inputs. */
  char *argv[] = {"fuzz-session", "--listen=127.0.0.1:0", broker, modearg, hs, cn, hb,
                  "--auth-cache-ttl=0", "--max-frame-size=2048",
                  "--max-headers=12", "--max-header-size=256", "--max-http-head=1024",
                  "--max-subscriptions=4", "--max-transactions=2", "--max-tx-frames=4",
                  "--app-prefix=/app/", "--max-outbound-bytes=65536", NULL};
  char *envp[] = {NULL};
  int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
  FZ_CHECK(sg_config_load(cfg, argc, argv, envp) == 0);
}

static void start_listener(sg_listener_t *l, sg_session_ctx_t *ctx, int *port) {
  FZ_CHECK(sg_listener_start(l, &loop, ctx, 0) == 0);
  FZ_CHECK(sg_listener_listen(l) == 0);
  *port = sg_listener_port(l);
  FZ_CHECK(*port > 0);
}

static void start_stomp_listener(sg_listener_t *l, sg_session_ctx_t *ctx, int *port) {
  FZ_CHECK(sg_listener_bind(l, &loop, ctx, "127.0.0.1", 0, sg_stomp_tcp_accept) == 0);
  FZ_CHECK(sg_listener_listen(l) == 0);
  *port = sg_listener_port(l);
  FZ_CHECK(*port > 0);
}

static void init_once(void) {
  static int done;
  if (done) return;
  done = 1;
  signal(SIGPIPE, SIG_IGN);
  const char *lvl = getenv("SG_FUZZ_LOG");
  sg_log_set_level(lvl ? sg_log_level_parse(lvl) : -1);
  FZ_CHECK(uv_loop_init(&loop) == 0);
  FZ_CHECK(uv_timer_init(&loop, &guard) == 0);
  int fb_port;
  FZ_CHECK(fb_start(&loop, POOL_USER, &fb_port) == 0);
  /* Timeouts long enough never to fire while an input runs, so that runs
   * repeat; and one gateway whose timers do fire. */
  load_config(&cfg_ps, "per-session", fb_port, 5000);
  load_config(&cfg_sh, "shared", fb_port, 5000);
  load_config(&cfg_tm, "per-session", fb_port, 10);
  FZ_CHECK(sg_amqp_set_nodes(cfg_ps.brokers, cfg_ps.nbrokers) == 0);
  FZ_CHECK(sg_ws_loop_init(&loop) == 0 && sg_amqp_loop_init(&loop) == 0 &&
           sg_stomp_tcp_loop_init(&loop) == 0);
  ctx_ps.cfg = &cfg_ps;
  ctx_ps.relay = &sg_relay_per_session;
  ctx_sh.cfg = &cfg_sh;
  ctx_sh.relay = &sg_relay_shared;
  FZ_CHECK(sg_relay_shared.worker_start(&ctx_sh, &loop) == 0);
  start_listener(&lis_ps, &ctx_ps, &port_ps);
  start_listener(&lis_sh, &ctx_sh, &port_sh);
  ctx_tm.cfg = &cfg_tm;
  ctx_tm.relay = &sg_relay_per_session;
  start_listener(&lis_tm, &ctx_tm, &port_tm);
  start_stomp_listener(&st_ps, &ctx_ps, &sport_ps);
  start_stomp_listener(&st_sh, &ctx_sh, &sport_sh);
  start_stomp_listener(&st_tm, &ctx_tm, &sport_tm);
}

/* ---------- the client ---------- */

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h, (void)suggested;
  static char buf[65536];
  *b = uv_buf_init(buf, sizeof(buf));
}

static void client_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s, (void)b;
  if (n > 0) cl.activity++;
  if (n < 0) {
    cl.eof = 1;
    cl.activity++;
    uv_read_stop(s);
  }
}

static void client_connect_cb(uv_connect_t *req, int status) {
  (void)req;
  if (status < 0) {
    cl.failed = 1;
    return;
  }
  cl.connected = 1;
  uv_tcp_nodelay(&cl.tcp, 1);
  uv_read_start((uv_stream_t *)&cl.tcp, client_alloc_cb, client_read_cb);
}

static void client_write_cb(uv_write_t *req, int status) {
  free(req);
  cl.writes--;
  cl.activity++;
  if (status < 0) cl.failed = 1;
}

static void client_shutdown_cb(uv_shutdown_t *req, int status) {
  (void)req, (void)status;
  cl.activity++;
}

static void client_closed_cb(uv_handle_t *h) {
  (void)h;
  cl.closed = 1;
}

/* ---------- running the loop ---------- */

/* Writes, connects, shutdowns and thread-pool work (the broker logins) in
 * flight: uv_loop_t's public count, which uv_loop_alive() reads too. */
static unsigned active_reqs(void) { return loop.active_reqs.count; }

/* Runs the loop until stop() holds, or nothing happened for QUIET_ROUNDS
 * turns with no request (write, connect, thread-pool login) in flight, or
 * cap_ms passed. Waits block only while a request is in flight, and the
 * guard timer bounds each wait. Returns 1 when stop() held. */
static int run_until(int (*stop)(void), int until_quiet, uint64_t cap_ms) {
  uv_update_time(&loop);
  uint64_t end = uv_now(&loop) + cap_ms;
  unsigned quiet = 0;
  int ok = 0;
  uv_timer_start(&guard, guard_cb, 2, 2);
  for (;;) {
    if (stop()) {
      ok = 1;
      break;
    }
    unsigned before = cl.activity;
    uv_run(&loop, active_reqs() > 0 || !until_quiet ? UV_RUN_ONCE : UV_RUN_NOWAIT);
    int moved = fb_take_activity() != 0 || cl.activity != before;
    if (moved || active_reqs() > 0) quiet = 0;
    else if (until_quiet && ++quiet >= QUIET_ROUNDS) break;
    uv_update_time(&loop);
    if (uv_now(&loop) >= end) break;
  }
  uv_timer_stop(&guard);
  return ok;
}

static int connected_or_failed(void) { return cl.connected || cl.failed; }
static int written(void) { return cl.writes == 0; }
static int gateway_closed(void) { return cl.eof; }
static int all_gone(void) {
  return cl.closed && sg_session_count() == 0 && fb_open_connections() == 0 && active_reqs() == 0;
}
static int never(void) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < HEADER_LEN) return 0;
  init_once();
  int shared = data[0] & 1, half_close = data[0] & 2, drain = data[0] & 4;
  int timers = data[0] & 16, tcp = data[0] & 32;
  fb_set_script(data[1] | (data[0] & 8 ? FB_BLOCKED : 0), data[2]);
  uint32_t seed = (uint32_t)data[3] | (uint32_t)data[4] << 8;
  const uint8_t *s = data + HEADER_LEN;
  size_t n = size - HEADER_LEN;

  memset(&cl, 0, sizeof(cl));
  FZ_CHECK(uv_tcp_init(&loop, &cl.tcp) == 0);
  struct sockaddr_in sa;
  int port = timers ? (tcp ? sport_tm : port_tm) : shared ? (tcp ? sport_sh : port_sh)
                                                          : (tcp ? sport_ps : port_ps);
  uv_ip4_addr("127.0.0.1", port, &sa);
  FZ_CHECK(uv_tcp_connect(&cl.connect, &cl.tcp, (const struct sockaddr *)&sa,
                          client_connect_cb) == 0);
  run_until(connected_or_failed, 0, FREE_CAP_MS);
  FZ_CHECK(cl.connected);

  /* Seed 0 mod 8 writes the stream whole; otherwise pieces of up to a
   * seed-chosen size, never more than MAX_PIECES of them. */
  size_t maxpiece = (seed & 7) == 0 ? n : 1 + (seed >> 3) % 512;
  if (maxpiece < n / MAX_PIECES + 1) maxpiece = n / MAX_PIECES + 1;
  size_t off = 0;
  while (off < n && !cl.eof && !cl.failed) {
    size_t piece = 1 + rng_next(&seed) % maxpiece;
    if (piece > n - off) piece = n - off;
    uv_write_t *w = malloc(sizeof(*w));
    FZ_CHECK(w != NULL);
    uv_buf_t b = uv_buf_init((char *)s + off, (unsigned)piece);
    if (uv_write(w, (uv_stream_t *)&cl.tcp, &b, 1, client_write_cb) != 0) {
      free(w);
      break;
    }
    cl.writes++;
    off += piece;
    /* The input must stay untouched until it is written. */
    run_until(written, 0, FREE_CAP_MS);
    run_until(never, 1, SETTLE_CAP_MS);
  }
  run_until(gateway_closed, 1, SETTLE_CAP_MS);
  if (timers) run_until(gateway_closed, 0, TIMERS_RUN_MS);
  if (drain && !cl.eof) {
    sg_session_drain_all();
    run_until(gateway_closed, 1, SETTLE_CAP_MS);
  }

  if (half_close && !cl.eof && !cl.failed &&
      uv_shutdown(&cl.shutdown, (uv_stream_t *)&cl.tcp, client_shutdown_cb) == 0)
    run_until(gateway_closed, 1, SETTLE_CAP_MS);
  uv_close((uv_handle_t *)&cl.tcp, client_closed_cb);
  if (!run_until(all_gone, 0, FREE_CAP_MS)) {
    fprintf(stderr, "after the client left: %zu session(s), %zu broker connection(s), %u request(s)\n",
            sg_session_count(), fb_open_connections(), active_reqs());
    FZ_CHECK(!"every session ends once its client is gone");
  }
  return 0;
}

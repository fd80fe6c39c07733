/* SPDX-License-Identifier: MIT */
#include "app_setup.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#define SETUP_TIMEOUT_S 10
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

typedef struct app_setup {
  uv_work_t work;
  uv_timer_t retry;
  const sg_config_t *cfg;
  uint64_t delay_ms;
  int ok;
  char error[256];
} app_setup_t;

static app_setup_t setup;

static int reply_error(amqp_rpc_reply_t r, char *out, size_t cap) {
  switch (r.reply_type) {
  case AMQP_RESPONSE_NORMAL:
    return 0;
  case AMQP_RESPONSE_SERVER_EXCEPTION:
    if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_t *m = r.reply.decoded;
      snprintf(out, cap, "%u %.*s", m->reply_code, (int)m->reply_text.len,
               (const char *)m->reply_text.bytes);
    } else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *m = r.reply.decoded;
      snprintf(out, cap, "%u %.*s", m->reply_code, (int)m->reply_text.len,
               (const char *)m->reply_text.bytes);
    } else {
      snprintf(out, cap, "unexpected broker reply");
    }
    return -1;
  case AMQP_RESPONSE_LIBRARY_EXCEPTION:
    snprintf(out, cap, "%s", amqp_error_string2(r.library_error));
    return -1;
  default:
    snprintf(out, cap, "no reply");
    return -1;
  }
}

/* Thread pool: one short-lived connection, one declare. */
static void declare_work_cb(uv_work_t *w) {
  app_setup_t *a = w->data;
  const sg_broker_addr_t *b = &a->cfg->broker;
  struct timeval tv = {SETUP_TIMEOUT_S, 0};
  a->ok = 0;
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = conn ? amqp_tcp_socket_new(conn) : NULL;
  if (sock == NULL) {
    snprintf(a->error, sizeof(a->error), "out of memory");
    goto out;
  }
  amqp_set_handshake_timeout(conn, &tv);
  amqp_set_rpc_timeout(conn, &tv);
  int r = amqp_socket_open_noblock(sock, b->host, b->port, &tv);
  if (r != AMQP_STATUS_OK) {
    snprintf(a->error, sizeof(a->error), "cannot reach %s:%d: %s", b->host, b->port,
             amqp_error_string2(r));
    goto out;
  }
  if (reply_error(amqp_login(conn, b->vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, b->user,
                             b->password),
                  a->error, sizeof(a->error)))
    goto out;
  amqp_channel_open(conn, 1);
  if (reply_error(amqp_get_rpc_reply(conn), a->error, sizeof(a->error))) goto close;
  amqp_exchange_declare(conn, 1, amqp_cstring_bytes(a->cfg->app_exchange),
                        amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
  if (reply_error(amqp_get_rpc_reply(conn), a->error, sizeof(a->error))) goto close;
  a->ok = 1;
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
close:
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
out:
  if (conn) amqp_destroy_connection(conn);
}

static void retry_cb(uv_timer_t *t);

static void declare_done_cb(uv_work_t *w, int status) {
  app_setup_t *a = w->data;
  if (status == UV_ECANCELED) return;
  if (a->ok) {
    sg_log_info("application exchange '%s' declared (topic, durable)", a->cfg->app_exchange);
    return;
  }
  sg_log_warn("cannot declare application exchange '%s': %s; retrying in %llu ms",
              a->cfg->app_exchange, a->error, (unsigned long long)a->delay_ms);
  uv_timer_start(&a->retry, retry_cb, a->delay_ms, 0);
  a->delay_ms = a->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->delay_ms * 2;
}

static void retry_cb(uv_timer_t *t) {
  app_setup_t *a = t->data;
  if (uv_queue_work(t->loop, &a->work, declare_work_cb, declare_done_cb) != 0)
    uv_timer_start(&a->retry, retry_cb, a->delay_ms, 0);
}

int sg_app_setup_start(uv_loop_t *loop, const sg_config_t *cfg) {
  if (cfg->n_app_prefixes == 0) return 0;
  memset(&setup, 0, sizeof(setup));
  setup.cfg = cfg;
  setup.delay_ms = RETRY_MIN_MS;
  setup.work.data = &setup;
  int r = uv_timer_init(loop, &setup.retry);
  if (r) return r;
  setup.retry.data = &setup;
  /* Waiting to retry must not keep a stopping gateway alive. */
  uv_unref((uv_handle_t *)&setup.retry);
  return uv_queue_work(loop, &setup.work, declare_work_cb, declare_done_cb);
}

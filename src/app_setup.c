/* SPDX-License-Identifier: MIT */
#include "app_setup.h"

#include <amqp.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "relay.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

typedef struct app_setup {
  uv_work_t work;
  uv_timer_t retry;
  const sg_config_t *cfg;
  uint64_t delay_ms;
  int ok;
  char error[256];
  const char *names[2]; /* exchanges to declare */
  size_t n;
} app_setup_t;

static app_setup_t setup;

/* Thread pool: one short-lived connection, one declare. */
static void declare_work_cb(uv_work_t *w) {
  app_setup_t *a = w->data;
  const sg_broker_addr_t *b = &a->cfg->broker;
  int status;
  a->ok = 0;
  amqp_connection_state_t conn =
      sg_amqp_login_blocking(b->host, b->port, b->user, b->password, b->vhost,
                             "stompgate set-up", &status, a->error, sizeof(a->error), NULL);
  if (conn == NULL) return;
  amqp_channel_open(conn, 1);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
  for (size_t i = 0; i < a->n && r.reply_type == AMQP_RESPONSE_NORMAL; i++) {
    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(a->names[i]), amqp_cstring_bytes("topic"),
                          0, 1, 0, 0, amqp_empty_table);
    r = amqp_get_rpc_reply(conn);
  }
  if (r.reply_type == AMQP_RESPONSE_NORMAL) {
    a->ok = 1;
  } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *m = r.reply.decoded;
    snprintf(a->error, sizeof(a->error), "%u %.*s", m->reply_code, (int)m->reply_text.len,
             (const char *)m->reply_text.bytes);
  } else {
    snprintf(a->error, sizeof(a->error), "the broker refused the declaration");
  }
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

static void retry_cb(uv_timer_t *t);

static void declare_done_cb(uv_work_t *w, int status) {
  app_setup_t *a = w->data;
  if (status == UV_ECANCELED) return;
  if (a->ok) {
    for (size_t i = 0; i < a->n; i++)
      sg_log_info("%s exchange '%s' declared (topic, durable)",
                  a->names[i] == a->cfg->app_exchange ? "application" : "user", a->names[i]);
    return;
  }
  sg_log_warn("cannot declare exchange '%s'%s%s: %s; retrying in %llu ms", a->names[0],
              a->n > 1 ? " and " : "", a->n > 1 ? a->names[1] : "", a->error,
              (unsigned long long)a->delay_ms);
  uv_timer_start(&a->retry, retry_cb, a->delay_ms, 0);
  a->delay_ms = a->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->delay_ms * 2;
}

static void retry_cb(uv_timer_t *t) {
  app_setup_t *a = t->data;
  if (uv_queue_work(t->loop, &a->work, declare_work_cb, declare_done_cb) != 0)
    uv_timer_start(&a->retry, retry_cb, a->delay_ms, 0);
}

int sg_app_setup_start(uv_loop_t *loop, const sg_config_t *cfg) {
  memset(&setup, 0, sizeof(setup));
  if (cfg->app_prefixes.n) setup.names[setup.n++] = cfg->app_exchange;
  /* amq.* exchanges exist already, and RabbitMQ refuses to declare them. */
  if (sg_relay_of(cfg->mode)->user_destinations && cfg->user_exchange &&
      strncmp(cfg->user_exchange, "amq.", 4))
    setup.names[setup.n++] = cfg->user_exchange;
  if (setup.n == 0) return 0;
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

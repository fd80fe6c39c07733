/* SPDX-License-Identifier: MIT */
#include "app_setup.h"

#include <amqp.h>
#include <stdio.h>
#include <string.h>

#include <amqp_framing.h>

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
  char notes[1024];     /* history streams kept as they were found */
  unsigned char kept[SG_HISTORY_MAX];
} app_setup_t;

static app_setup_t setup;

/* The code and text of a channel.close r carries; *code 0 when none. */
static amqp_rpc_reply_t closed_with(amqp_rpc_reply_t r, int *code, char *text, size_t cap) {
  *code = 0;
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *m = r.reply.decoded;
    *code = m->reply_code;
    snprintf(text, cap, "%.*s", (int)m->reply_text.len, (const char *)m->reply_text.bytes);
  }
  return r;
}

/* Declares h's stream (durable, x-queue-type stream, its retention and
 * segment size) and binds it to amq.topic with its pattern, on channel
 * ch. A stream that exists with other arguments is kept (*kept) and
 * noted. */
static amqp_rpc_reply_t history_declare(amqp_connection_state_t conn, amqp_channel_t ch,
                                        const sg_config_t *cfg, const sg_history_t *h,
                                        unsigned char *kept, char *notes, size_t cap) {
  amqp_channel_open(conn, ch);
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) return r;
  amqp_table_entry_t e[3];
  e[0].key = amqp_cstring_bytes("x-queue-type");
  e[0].value.kind = AMQP_FIELD_KIND_UTF8;
  e[0].value.value.bytes = amqp_cstring_bytes("stream");
  e[1].key = amqp_cstring_bytes("x-max-age");
  e[1].value.kind = AMQP_FIELD_KIND_UTF8;
  e[1].value.value.bytes = amqp_cstring_bytes(h->retention);
  e[2].key = amqp_cstring_bytes("x-stream-max-segment-size-bytes");
  e[2].value.kind = AMQP_FIELD_KIND_I64;
  e[2].value.value.i64 = (int64_t)cfg->history_segment_bytes;
  amqp_table_t args = {3, e};
  amqp_queue_declare(conn, ch, amqp_cstring_bytes(h->queue), 0, 1, 0, 0, args);
  int code;
  char text[200];
  r = closed_with(amqp_get_rpc_reply(conn), &code, text, sizeof(text));
  *kept = code == 406;
  if (code == 406) {
    size_t used = strlen(notes);
    snprintf(notes + used, cap - used, "%sstream '%s' exists with other arguments, kept as it is (%s)",
             used ? "; " : "", h->queue, text);
    amqp_channel_close_ok_t ok = {0};
    amqp_send_method(conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
    amqp_channel_open(conn, ch);
    r = amqp_get_rpc_reply(conn);
  }
  if (r.reply_type != AMQP_RESPONSE_NORMAL) return r;
  amqp_queue_bind(conn, ch, amqp_cstring_bytes(h->queue), amqp_cstring_bytes("amq.topic"),
                  amqp_cstring_bytes(h->pattern), amqp_empty_table);
  return amqp_get_rpc_reply(conn);
}

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
  /* Each history stream on a channel of its own: one that exists with
   * other arguments (a 406, which closes the channel) is used as it is. */
  a->notes[0] = '\0';
  for (size_t i = 0; i < a->cfg->nhistory && r.reply_type == AMQP_RESPONSE_NORMAL; i++)
    r = history_declare(conn, (amqp_channel_t)(2 + i), a->cfg, &a->cfg->history[i], &a->kept[i],
                        a->notes, sizeof(a->notes));
  int code;
  char text[200];
  closed_with(r, &code, text, sizeof(text));
  if (r.reply_type == AMQP_RESPONSE_NORMAL) {
    a->ok = 1;
  } else if (code) {
    snprintf(a->error, sizeof(a->error), "%d %s", code, text);
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
    for (size_t i = 0; i < a->cfg->nhistory; i++) {
      const sg_history_t *h = &a->cfg->history[i];
      if (!a->kept[i])
        sg_log_info("history: stream '%s' bound to amq.topic with '%s' (x-max-age %s, segments "
                    "of %zu bytes)",
                    h->queue, h->pattern, h->retention, a->cfg->history_segment_bytes);
    }
    if (a->notes[0]) sg_log_warn("history: %s", a->notes);
    return;
  }
  if (a->n == 0)
    sg_log_warn("cannot declare the history streams: %s; retrying in %llu ms", a->error,
                (unsigned long long)a->delay_ms);
  else
    sg_log_warn("cannot declare exchange '%s'%s%s%s: %s; retrying in %llu ms", a->names[0],
                a->n > 1 ? " and " : "", a->n > 1 ? a->names[1] : "",
                a->cfg->nhistory ? " and the history streams" : "", a->error,
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
  if (setup.n == 0 && cfg->nhistory == 0) return 0;
  setup.cfg = cfg;
  setup.delay_ms = RETRY_MIN_MS;
  setup.work.data = &setup;
  int r = uv_timer_init(loop, &setup.retry);
  if (r) return r;
  setup.retry.data = &setup;
  /* Waiting to retry must not keep a stopping gateway alive. */
  uv_unref((uv_handle_t *)&setup.retry);
  if (cfg->nhistory > 0) {
    /* History streams are consumed as soon as a subscription asks: the
     * first attempt is made before the workers take sessions. */
    setup.work.loop = loop;
    declare_work_cb(&setup.work);
    declare_done_cb(&setup.work, 0);
    return 0;
  }
  return uv_queue_work(loop, &setup.work, declare_work_cb, declare_done_cb);
}

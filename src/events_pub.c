/* SPDX-License-Identifier: MIT */
#include "events_pub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

/* A worker's publisher: one AMQP connection under the --broker
 * credentials, one channel without publisher confirms, and the queue of
 * events.c. Publishing is fire-and-forget; nothing waits for the broker. */
typedef struct sg_events_pub {
  sg_events_t ev;
  uv_loop_t *loop;
  const sg_config_t *cfg;
  sg_amqp_conn_t *conn; /* NULL between connections */
  sg_amqp_t chan;
  int chan_state;       /* enum sg_amqp_state of chan */
  uv_timer_t retry;
  uint64_t delay_ms;
  int declared_logged;
  uint64_t opens;       /* channels opened so far */
} sg_events_pub_t;

static void flush(sg_events_pub_t *p) {
  sg_event_msg_t *m;
  while (p->chan_state == SG_AMQP_OPEN && !p->conn->blocked && (m = sg_events_peek(&p->ev))) {
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof(props));
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                   AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TYPE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.delivery_mode = 1;
    props.app_id = amqp_cstring_bytes("stompgate");
    props.type = amqp_cstring_bytes(sg_event_kind_names[m->kind]);
    amqp_bytes_t body = {m->body_len, m->body};
    uint64_t seq;
    if (sg_amqp_publish(&p->chan, amqp_cstring_bytes(p->ev.exchange), amqp_cstring_bytes(m->key),
                        &props, body, &seq) != 0)
      return; /* the connection is lost; the event waits for the next one */
    sg_events_count_published(m->kind);
    sg_events_pop(&p->ev);
  }
}

static void kick_cb(sg_events_t *ev) { flush((sg_events_pub_t *)ev->data); }

static void connect_cb(uv_timer_t *t);

static void schedule(sg_events_pub_t *p) {
  uv_timer_start(&p->retry, connect_cb, p->delay_ms, 0);
  p->delay_ms = p->delay_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->delay_ms * 2;
}

static void give_up_conn(sg_events_pub_t *p) {
  p->ev.connected = 0;
  if (p->chan_state == SG_AMQP_LOGIN || p->chan_state == SG_AMQP_OPEN ||
      p->chan_state == SG_AMQP_DEAD) {
    p->chan_state = SG_AMQP_CLOSING;
    sg_amqp_close(&p->chan);
  }
  /* A lost connection is closed by conn_lost_cb. */
  if (p->conn && p->conn->state == SG_AMQP_OPEN) sg_amqp_conn_close(p->conn);
}

static void chan_open_cb(sg_amqp_t *a, int status, const char *message) {
  sg_events_pub_t *p = a->data;
  if (status != 0) {
    sg_log_warn("worker %d: session events channel failed: %s", p->ev.worker, message);
    p->chan_state = SG_AMQP_DEAD;
    give_up_conn(p);
    return;
  }
  /* The exchange is declared on the channel that publishes to it, ahead
   * of the first publish: a broker that lost it (a new node) gets it back. */
  amqp_exchange_declare_t d;
  memset(&d, 0, sizeof(d));
  d.exchange = amqp_cstring_bytes(p->ev.exchange);
  d.type = amqp_cstring_bytes("topic");
  d.durable = 1;
  d.arguments = amqp_empty_table;
  if (sg_amqp_rpc(a, AMQP_EXCHANGE_DECLARE_METHOD, &d, AMQP_EXCHANGE_DECLARE_OK_METHOD) < 0)
    return; /* the connection is lost: on_lost_cb follows */
  p->chan_state = SG_AMQP_OPEN;
  p->ev.connected = 1;
  p->delay_ms = RETRY_MIN_MS;
  if (p->opens++ > 0)
    sg_log_info("worker %d: session events connection open again; %zu events waited",
                p->ev.worker, p->ev.n);
  flush(p);
}

static void chan_progress_cb(sg_amqp_t *a) {
  sg_events_pub_t *p = a->data;
  if (!p->declared_logged && a->rpc_done >= a->rpc_sent) {
    p->declared_logged = 1;
    if (p->ev.worker == 0)
      sg_log_info("session events exchange '%s' declared (topic, durable)", p->ev.exchange);
  }
}

static void chan_lost_cb(sg_amqp_t *a, int code, const char *text) {
  sg_events_pub_t *p = a->data;
  sg_log_warn("worker %d: session events channel lost (%d %s); %zu events wait", p->ev.worker,
              code, text ? text : "", p->ev.n);
  p->chan_state = SG_AMQP_DEAD;
  give_up_conn(p);
}

static void chan_closed_cb(sg_amqp_t *a) {
  sg_events_pub_t *p = a->data;
  p->chan_state = SG_AMQP_CLOSED;
}

static void chan_blocked_cb(sg_amqp_t *a, int blocked) {
  sg_events_pub_t *p = a->data;
  if (!blocked) flush(p);
}

static void ignore_delivery_cb(sg_amqp_t *a, const sg_amqp_delivery_t *d) { (void)a, (void)d; }
static void ignore_confirm_cb(sg_amqp_t *a, uint64_t t, int m, int k) {
  (void)a, (void)t, (void)m, (void)k;
}
static void ignore_cancel_cb(sg_amqp_t *a, amqp_bytes_t tag) { (void)a, (void)tag; }

static const sg_amqp_cbs_t chan_cbs = {chan_open_cb,     ignore_delivery_cb, ignore_confirm_cb,
                                       chan_progress_cb, ignore_cancel_cb,   chan_lost_cb,
                                       chan_closed_cb,   chan_blocked_cb};

static void conn_open_cb(sg_amqp_conn_t *c, int status, const char *message) {
  sg_events_pub_t *p = c->data;
  if (status != 0) {
    sg_log_warn("worker %d: session events cannot reach the broker: %s; retrying in %llu ms",
                p->ev.worker, message, (unsigned long long)p->delay_ms);
    sg_amqp_conn_close(c);
    return;
  }
  p->chan.data = p;
  p->chan_state = SG_AMQP_LOGIN;
  c->no_confirms = 1;
  if (sg_amqp_open_on(&p->chan, c, &chan_cbs) != 0) {
    p->chan_state = SG_AMQP_CLOSED;
    sg_amqp_conn_close(c);
  }
}

static void conn_lost_cb(sg_amqp_conn_t *c, int code, const char *text) {
  sg_events_pub_t *p = c->data;
  sg_log_warn("worker %d: session events connection lost (%d %s)", p->ev.worker, code,
              text ? text : "");
  p->ev.connected = 0;
  sg_amqp_conn_close(c);
}

static void conn_closed_cb(sg_amqp_conn_t *c) {
  sg_events_pub_t *p = c->data;
  free(c);
  p->conn = NULL;
  p->ev.connected = 0;
  p->chan_state = SG_AMQP_IDLE;
  schedule(p);
}

static const sg_amqp_conn_cbs_t conn_cbs = {conn_open_cb, conn_lost_cb, conn_closed_cb};

static void connect_cb(uv_timer_t *t) {
  sg_events_pub_t *p = t->data;
  sg_amqp_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    schedule(p);
    return;
  }
  const sg_broker_addr_t *b = &p->cfg->broker;
  char name[160];
  snprintf(name, sizeof(name), "stompgate %.100s worker %d events", p->ev.instance, p->ev.worker);
  if (sg_amqp_conn_open(c, p->loop, &conn_cbs, b->host, b->port, b->user, b->password, b->vhost,
                        name) != 0) {
    free(c);
    schedule(p);
    return;
  }
  c->data = p;
  p->conn = c;
}

sg_events_t *sg_events_pub_start(uv_loop_t *loop, const sg_config_t *cfg, int worker) {
  if (cfg->events_exchange == NULL) return NULL;
  sg_events_pub_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  if (sg_events_init(&p->ev, cfg->events_exchange, cfg->instance_id, cfg->events_buffer,
                     worker) != 0 ||
      uv_timer_init(loop, &p->retry) != 0) {
    free(p->ev.q);
    free(p);
    return NULL;
  }
  p->loop = loop;
  p->cfg = cfg;
  p->delay_ms = RETRY_MIN_MS;
  p->ev.data = p;
  p->ev.kick_cb = kick_cb;
  p->retry.data = p;
  uv_unref((uv_handle_t *)&p->retry);
  /* The connection is opened from the worker's own thread, once its loop
   * runs. */
  uv_timer_start(&p->retry, connect_cb, 0, 0);
  return &p->ev;
}

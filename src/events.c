/* SPDX-License-Identifier: MIT */
#include "events.h"

#include <cJSON.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

const char *const sg_event_kind_names[SG_EVENT_KINDS] = {"connected", "subscribed",
                                                         "unsubscribed", "disconnected"};
static const char *const drop_names[SG_EVENT_DROPS] = {"blocked", "disconnected", "error"};

static atomic_uint_fast64_t published[SG_EVENT_KINDS];
static atomic_uint_fast64_t dropped[SG_EVENT_DROPS];

static int add_str(cJSON *o, const char *name, const char *v) {
  return cJSON_AddStringToObject(o, name, v ? v : "") ? 0 : -1;
}

int sg_events_encode(sg_buf_t *key, sg_buf_t *body, const sg_event_t *e, const char *instance,
                     uint64_t time_ms) {
  if (e->kind < 0 || e->kind >= SG_EVENT_KINDS) return -1;
  const char *kind = sg_event_kind_names[e->kind];
  sg_buf_reset(key);
  if (sg_buf_printf(key, "session.%s.%s", kind, e->vhost ? e->vhost : "") != 0) return -1;
  char when[40], sess[32];
  time_t secs = (time_t)(time_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof(when) - n, ".%03uZ", (unsigned)(time_ms % 1000));
  snprintf(sess, sizeof(sess), "session-%" PRIu64, e->session);
  cJSON *o = cJSON_CreateObject();
  if (o == NULL) return -1;
  int r = add_str(o, "event", kind) | add_str(o, "instance", instance) |
          add_str(o, "session", sess) | add_str(o, "user", e->user) |
          add_str(o, "vhost", e->vhost) | add_str(o, "client", e->client) |
          add_str(o, "time", when);
  if (e->kind == SG_EVENT_SUBSCRIBED || e->kind == SG_EVENT_UNSUBSCRIBED)
    r |= add_str(o, "destination", e->destination) | add_str(o, "subscription", e->subscription);
  if (e->kind == SG_EVENT_DISCONNECTED) {
    r |= add_str(o, "reason", e->reason ? e->reason : "closed");
    r |= cJSON_AddNumberToObject(o, "duration_ms", (double)e->duration_ms) ? 0 : -1;
  }
  char *text = r ? NULL : cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (text == NULL) return -1;
  sg_buf_reset(body);
  r = sg_buf_appendz(body, text);
  cJSON_free(text);
  return r ? -1 : 0;
}

int sg_events_init(sg_events_t *ev, const char *exchange, const char *instance, size_t cap,
                   int worker) {
  memset(ev, 0, sizeof(*ev));
  ev->exchange = exchange;
  ev->instance = instance ? instance : "";
  ev->cap = cap ? cap : 1;
  ev->worker = worker;
  ev->q = calloc(ev->cap, sizeof(*ev->q));
  return ev->q ? 0 : -1;
}

static void drop(sg_events_t *ev, int reason) {
  atomic_fetch_add_explicit(&dropped[reason], 1, memory_order_relaxed);
  if (ev->dropping++ == 0)
    sg_log_warn("worker %d: session events dropped (%s): %zu wait for the broker", ev->worker,
                drop_names[reason], ev->n);
}

void sg_events_emit(sg_events_t *ev, const sg_event_t *e) {
  if (ev == NULL) return;
  if (ev->n == ev->cap) {
    drop(ev, ev->connected ? SG_EVENT_DROP_BLOCKED : SG_EVENT_DROP_DISCONNECTED);
    return;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
  sg_buf_t key, body;
  sg_buf_init(&key);
  sg_buf_init(&body);
  char *m = NULL;
  if (sg_events_encode(&key, &body, e, ev->instance, now) == 0 &&
      (m = malloc(key.len + 1 + body.len + 1)) != NULL) {
    sg_event_msg_t *slot = &ev->q[(ev->head + ev->n) % ev->cap];
    slot->kind = e->kind;
    slot->key = m;
    memcpy(m, key.base, key.len);
    m[key.len] = '\0';
    slot->body = m + key.len + 1;
    memcpy(slot->body, body.base, body.len);
    slot->body[body.len] = '\0';
    slot->body_len = body.len;
    ev->n++;
  }
  sg_buf_free(&key);
  sg_buf_free(&body);
  if (m == NULL) {
    drop(ev, SG_EVENT_DROP_ERROR);
    return;
  }
  if (ev->kick_cb) ev->kick_cb(ev);
}

sg_event_msg_t *sg_events_peek(sg_events_t *ev) { return ev->n ? &ev->q[ev->head] : NULL; }

void sg_events_pop(sg_events_t *ev) {
  if (ev->n == 0) return;
  free(ev->q[ev->head].key);
  ev->q[ev->head].key = NULL;
  ev->head = (ev->head + 1) % ev->cap;
  ev->n--;
  if (ev->dropping && ev->n == 0) {
    sg_log_warn("worker %d: session events flowing again; %" PRIu64 " were dropped", ev->worker,
                ev->dropping);
    ev->dropping = 0;
  }
}

void sg_events_count_published(int kind) {
  if (kind >= 0 && kind < SG_EVENT_KINDS)
    atomic_fetch_add_explicit(&published[kind], 1, memory_order_relaxed);
}

int sg_events_metrics(sg_buf_t *o) {
  int r = sg_buf_printf(o, "# HELP stompgate_events_published_total Session events handed to "
                           "the broker (events-exchange), by kind.\n"
                           "# TYPE stompgate_events_published_total counter\n");
  for (int i = 0; i < SG_EVENT_KINDS; i++)
    r |= sg_buf_printf(o, "stompgate_events_published_total{kind=\"%s\"} %" PRIu64 "\n",
                       sg_event_kind_names[i],
                       (uint64_t)atomic_load_explicit(&published[i], memory_order_relaxed));
  r |= sg_buf_printf(o, "# HELP stompgate_events_dropped_total Session events dropped: the "
                        "buffer was full while the broker pushed back (blocked) or was not "
                        "connected (disconnected), or out of memory (error).\n"
                        "# TYPE stompgate_events_dropped_total counter\n");
  for (int i = 0; i < SG_EVENT_DROPS; i++)
    r |= sg_buf_printf(o, "stompgate_events_dropped_total{reason=\"%s\"} %" PRIu64 "\n",
                       drop_names[i],
                       (uint64_t)atomic_load_explicit(&dropped[i], memory_order_relaxed));
  return r;
}

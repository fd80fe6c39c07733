/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

static const char *str(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void encodes_keys_and_fields(void **state) {
  (void)state;
  sg_buf_t key, body;
  sg_buf_init(&key);
  sg_buf_init(&body);
  /* What clients choose must come out as the same strings: quotes,
   * backslashes, control characters and non-ASCII text. */
  const char *dst = "/topic/chat.\"q\"\\x\n\t\x01\xc3\xa9\xe2\x9c\x93";
  sg_event_t e = {SG_EVENT_SUBSCRIBED, 42, "al\"ice", "/", "127.0.0.1:5000", dst, "id\\1",
                  NULL, 0};
  assert_int_equal(sg_events_encode(&key, &body, &e, "gw-1:7", 1764979323456ull), 0);
  assert_string_equal(key.base, "session.subscribed./");
  cJSON *o = cJSON_ParseWithLength(body.base, body.len);
  assert_non_null(o);
  assert_string_equal(str(o, "event"), "subscribed");
  assert_string_equal(str(o, "instance"), "gw-1:7");
  assert_string_equal(str(o, "session"), "session-42");
  assert_string_equal(str(o, "user"), "al\"ice");
  assert_string_equal(str(o, "vhost"), "/");
  assert_string_equal(str(o, "client"), "127.0.0.1:5000");
  assert_string_equal(str(o, "destination"), dst);
  assert_string_equal(str(o, "subscription"), "id\\1");
  assert_string_equal(str(o, "time"), "2025-12-06T00:02:03.456Z");
  assert_null(cJSON_GetObjectItemCaseSensitive(o, "reason"));
  assert_null(strchr(body.base, '\n'));
  cJSON_Delete(o);

  sg_event_t d = {SG_EVENT_DISCONNECTED, 7, "bob", "v.h", "[::1]:1", NULL, NULL,
                  "client closed the connection", 1234};
  assert_int_equal(sg_events_encode(&key, &body, &d, "x", 0), 0);
  assert_string_equal(key.base, "session.disconnected.v.h");
  o = cJSON_ParseWithLength(body.base, body.len);
  assert_non_null(o);
  assert_string_equal(str(o, "reason"), "client closed the connection");
  assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(o, "duration_ms")->valuedouble, 1234);
  assert_string_equal(str(o, "time"), "1970-01-01T00:00:00.000Z");
  assert_null(cJSON_GetObjectItemCaseSensitive(o, "destination"));
  cJSON_Delete(o);

  sg_event_t bad = {SG_EVENT_KINDS, 1, NULL, NULL, NULL, NULL, NULL, NULL, 0};
  assert_int_equal(sg_events_encode(&key, &body, &bad, "x", 0), -1);
  sg_buf_free(&key);
  sg_buf_free(&body);
}

static int kicks;
static void kick_cb(sg_events_t *ev) { (void)ev, kicks++; }

static double sample(const sg_buf_t *b, const char *series) {
  char k[256];
  snprintf(k, sizeof(k), "\n%s ", series);
  const char *p = strstr(b->base, k);
  double v = -1;
  if (p) sscanf(p + strlen(k), "%lf", &v);
  return v;
}

static void bounded_queue_drops_and_counts(void **state) {
  (void)state;
  sg_events_t ev;
  assert_int_equal(sg_events_init(&ev, "ex", "gw", 2, 0), 0);
  ev.kick_cb = kick_cb;
  sg_event_t e = {SG_EVENT_CONNECTED, 1, "u", "/", "c", NULL, NULL, NULL, 0};
  sg_events_emit(NULL, &e); /* events off: nothing */
  sg_events_emit(&ev, &e);
  e.session = 2;
  sg_events_emit(&ev, &e);
  e.session = 3;
  sg_events_emit(&ev, &e); /* full, not connected */
  ev.connected = 1;
  sg_events_emit(&ev, &e); /* full, connected: the broker pushes back */
  assert_int_equal(kicks, 2);
  assert_int_equal(ev.n, 2);
  /* Oldest first. */
  sg_event_msg_t *m = sg_events_peek(&ev);
  assert_non_null(m);
  assert_non_null(strstr(m->body, "\"session-1\""));
  assert_string_equal(m->key, "session.connected./");
  assert_int_equal(m->body_len, strlen(m->body));
  sg_events_count_published(m->kind);
  sg_events_pop(&ev);
  e.session = 4;
  sg_events_emit(&ev, &e); /* room again; wraps around the ring */
  assert_non_null(strstr(sg_events_peek(&ev)->body, "\"session-2\""));
  sg_events_pop(&ev);
  assert_non_null(strstr(sg_events_peek(&ev)->body, "\"session-4\""));
  sg_events_pop(&ev);
  assert_null(sg_events_peek(&ev));
  assert_int_equal(ev.dropping, 0);

  sg_buf_t o;
  sg_buf_init(&o);
  assert_int_equal(sg_events_metrics(&o), 0);
  assert_true(sample(&o, "stompgate_events_published_total{kind=\"connected\"}") == 1);
  assert_true(sample(&o, "stompgate_events_published_total{kind=\"disconnected\"}") == 0);
  assert_true(sample(&o, "stompgate_events_dropped_total{reason=\"disconnected\"}") == 1);
  assert_true(sample(&o, "stompgate_events_dropped_total{reason=\"blocked\"}") == 1);
  assert_true(sample(&o, "stompgate_events_dropped_total{reason=\"error\"}") == 0);
  assert_non_null(strstr(o.base, "# TYPE stompgate_events_dropped_total counter\n"));
  sg_buf_free(&o);
  free(ev.q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(encodes_keys_and_fields),
      cmocka_unit_test(bounded_queue_drops_and_counts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "metrics.h"

/* The value of one sample line, or -1 when absent. */
static double sample(const sg_buf_t *b, const char *series) {
  char key[256];
  snprintf(key, sizeof(key), "\n%s ", series);
  const char *p = strstr(b->base, key);
  if (p == NULL) return -1;
  double v = -1;
  sscanf(p + strlen(key), "%lf", &v);
  return v;
}

static void counts_and_format(void **state) {
  (void)state;
  static const char msg[] = "MESSAGE\nsubscription:1\n\nbody\0";
  sg_metrics_frame_in(SG_STOMP_SEND);
  sg_metrics_frame_in(SG_STOMP_SEND);
  sg_metrics_frame_out(msg, sizeof(msg) - 1);
  sg_metrics_frame_out("\n", 1); /* a heart-beat is not a frame */
  sg_metrics_session_closed("DISCONNECT");
  sg_metrics_session_closed("ERROR server shutting down: bye");
  sg_metrics_session_closed("ERROR Access refused: login 'x'");
  sg_metrics_session_closed("ERROR Expected CONNECT: ...");
  sg_metrics_session_closed(NULL);
  sg_metrics_error("Expected CONNECT");
  sg_metrics_error("with \"quotes\"");
  sg_metrics_http_refused(429);
  sg_metrics_http_refused(418);
  sg_metrics_upgraded(0.003);
  sg_metrics_upgraded(20);
  sg_metrics_broker_link(1);
  sg_metrics_broker_link(0);
  sg_metrics_broker_link(1);
  sg_buf_t b;
  sg_buf_init(&b);
  sg_metrics_gauges_t g = {7, 1};
  assert_int_equal(sg_metrics_render(&b, &g), 0);
  assert_true(sample(&b, "stompgate_frames_in_total{command=\"SEND\"}") == 2);
  assert_true(sample(&b, "stompgate_frames_out_total{command=\"MESSAGE\"}") == 1);
  assert_true(sample(&b, "stompgate_sessions_closed_total{reason=\"disconnect\"}") == 1);
  assert_true(sample(&b, "stompgate_sessions_closed_total{reason=\"shutdown\"}") == 1);
  assert_true(sample(&b, "stompgate_sessions_closed_total{reason=\"auth_failed\"}") == 1);
  assert_true(sample(&b, "stompgate_sessions_closed_total{reason=\"protocol_error\"}") == 1);
  assert_true(sample(&b, "stompgate_errors_total{kind=\"Expected CONNECT\"}") == 1);
  assert_true(sample(&b, "stompgate_errors_total{kind=\"with _quotes_\"}") == 1);
  assert_true(sample(&b, "stompgate_upgrades_refused_total{status=\"429\"}") == 1);
  assert_true(sample(&b, "stompgate_upgrades_refused_total{status=\"other\"}") == 1);
  assert_true(sample(&b, "stompgate_sessions_open") == 7);
  assert_true(sample(&b, "stompgate_draining") == 1);
  assert_true(sample(&b, "stompgate_broker_reconnects_total") == 1);
  assert_true(sample(&b, "stompgate_handshake_seconds_bucket{le=\"0.005\"}") == 1);
  assert_true(sample(&b, "stompgate_handshake_seconds_bucket{le=\"10\"}") == 1);
  assert_true(sample(&b, "stompgate_handshake_seconds_bucket{le=\"+Inf\"}") == 2);
  assert_true(sample(&b, "stompgate_handshake_seconds_count") == 2);
  assert_true(sample(&b, "stompgate_slow_consumer_drops_total") == 0);
  /* Every series has HELP and TYPE lines before its samples. */
  assert_non_null(strstr(b.base, "# TYPE stompgate_handshake_seconds histogram\n"));
  assert_non_null(strstr(b.base, "# TYPE stompgate_frames_in_total counter\n"));
  sg_buf_free(&b);
}

static void error_kinds_are_bounded(void **state) {
  (void)state;
  char m[32];
  for (int i = 0; i < 200; i++) {
    snprintf(m, sizeof(m), "kind %d", i);
    sg_metrics_error(m);
  }
  sg_buf_t b;
  sg_buf_init(&b);
  sg_metrics_gauges_t g = {0, 0};
  assert_int_equal(sg_metrics_render(&b, &g), 0);
  size_t n = 0;
  for (const char *p = b.base; (p = strstr(p, "\nstompgate_errors_total{")) != NULL; p++) n++;
  assert_true(n <= 49);
  assert_true(sample(&b, "stompgate_errors_total{kind=\"other\"}") > 100);
  sg_buf_free(&b);
}

static void latency_and_links(void **state) {
  (void)state;
  sg_metrics_delivery_latency("shared", 0.0004);
  sg_metrics_delivery_latency("shared", 0.002);
  sg_metrics_delivery_latency("per-session", 3);
  sg_metrics_confirm_latency(0.01);
  sg_metrics_rpc_latency(0.0007);
  sg_metrics_session_duration(42);
  sg_metrics_broker_conn("rabbit-1:5672", 1);
  sg_metrics_broker_conn("rabbit-1:5672", 1);
  sg_metrics_broker_conn("rabbit-2:5672", 1);
  sg_metrics_broker_conn("rabbit-1:5672", -1);
  sg_buf_t b;
  sg_buf_init(&b);
  sg_metrics_gauges_t g = {0, 0};
  assert_int_equal(sg_metrics_render(&b, &g), 0);
  assert_true(sample(&b, "stompgate_delivery_seconds_bucket{relay=\"shared\",le=\"0.0005\"}") == 1);
  assert_true(sample(&b, "stompgate_delivery_seconds_bucket{relay=\"shared\",le=\"0.0025\"}") == 2);
  assert_true(sample(&b, "stompgate_delivery_seconds_count{relay=\"shared\"}") == 2);
  assert_true(sample(&b, "stompgate_delivery_seconds_bucket{relay=\"per-session\",le=\"2.5\"}") == 0);
  assert_true(sample(&b, "stompgate_delivery_seconds_bucket{relay=\"per-session\",le=\"5\"}") == 1);
  assert_true(sample(&b, "stompgate_delivery_seconds_sum{relay=\"per-session\"}") == 3);
  assert_true(sample(&b, "stompgate_publish_confirm_seconds_bucket{le=\"0.01\"}") == 1);
  assert_true(sample(&b, "stompgate_broker_rpc_seconds_bucket{le=\"0.001\"}") == 1);
  assert_true(sample(&b, "stompgate_session_duration_seconds_bucket{le=\"10\"}") == 0);
  assert_true(sample(&b, "stompgate_session_duration_seconds_bucket{le=\"+Inf\"}") == 1);
  assert_true(sample(&b, "stompgate_broker_links{node=\"rabbit-1:5672\"}") == 1);
  assert_true(sample(&b, "stompgate_broker_links{node=\"rabbit-2:5672\"}") == 1);
  /* One HELP and TYPE per family, the labelled histogram included. */
  const char *t = strstr(b.base, "# TYPE stompgate_delivery_seconds histogram\n");
  assert_non_null(t);
  assert_null(strstr(t + 1, "# TYPE stompgate_delivery_seconds histogram\n"));
  sg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counts_and_format),
      cmocka_unit_test(error_kinds_are_bounded),
      cmocka_unit_test(latency_and_links),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

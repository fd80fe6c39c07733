/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "admission.h"

static sg_http_request_t req_with_origin(const char *origin) {
  sg_http_request_t r;
  memset(&r, 0, sizeof(r));
  if (origin) r.origin = (sg_http_slice_t){origin, strlen(origin)};
  return r;
}

static void origins(void **state) {
  (void)state;
  char *list[] = {"https://app.example", "http://localhost:8080"};
  sg_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  sg_admit_refusal_t no;
  sg_http_request_t r = req_with_origin("https://evil.example");
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 0); /* no list: any Origin */
  cfg.allowed_origins = (sg_strlist_t){list, 2, 0};
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 1);
  assert_int_equal(no.status, 403);
  r = req_with_origin("https://app.example");
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 0);
  r = req_with_origin("HTTPS://APP.EXAMPLE");
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 0);
  r = req_with_origin("https://app.example.evil");
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 1);
  r = req_with_origin("https://app.exampl");
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 1);
  r = req_with_origin(NULL); /* not a browser */
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 0);
}

static void session_cap_and_drain(void **state) {
  (void)state;
  sg_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.max_sessions = 2;
  sg_admit_refusal_t no;
  sg_http_request_t r = req_with_origin(NULL);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 1, 0, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 2, 0, &no), 1);
  assert_int_equal(no.status, 503);
  assert_non_null(no.extra);
  sg_admit_set_draining(1);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, 0, &no), 1);
  assert_int_equal(no.status, 503);
  sg_admit_set_draining(0);
}

static void rate_bucket(void **state) {
  (void)state;
  sg_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.session_rate = 10;
  cfg.session_burst = 3;
  sg_admit_refusal_t no;
  sg_http_request_t r = req_with_origin(NULL);
  uint64_t t = 1000;
  for (int i = 0; i < 3; i++) assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t, &no), 1);
  assert_int_equal(no.status, 429);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 50, &no), 1);  /* half a token */
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 100, &no), 0); /* one token at 10/s */
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 100, &no), 1);
  /* A long pause refills only up to the burst. */
  for (int i = 0; i < 3; i++) assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 60000, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 60000, &no), 1);
}

/* Each client address has its own bucket, checked before the process's;
 * the port does not make another address. */
static void per_address(void **state) {
  (void)state;
  sg_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.session_rate_per_address = 2;
  sg_admit_refusal_t no;
  sg_http_request_t r = req_with_origin(NULL);
  uint64_t t = 5000;
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.7:1000", 0, t, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.7:1001", 0, t, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.7:1002", 0, t, &no), 1);
  assert_int_equal(no.status, 429);
  assert_non_null(strstr(no.reason, "address"));
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.8:1000", 0, t, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, "2001:db8::7:1000", 0, t, &no), 0);
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.7:1003", 0, t + 500, &no), 0); /* one token */
  assert_int_equal(sg_admit(&cfg, &r, "192.0.2.7:1004", 0, t + 500, &no), 1);
  assert_int_equal(sg_admit(&cfg, &r, NULL, 0, t + 500, &no), 0); /* no address: no bucket */
  /* Many addresses: each still gets its burst. */
  char peer[64];
  for (int i = 0; i < 10000; i++) {
    snprintf(peer, sizeof(peer), "10.%d.%d.1:80", i / 256, i % 256);
    assert_int_equal(sg_admit(&cfg, &r, peer, 0, t + 2000 + (uint64_t)i, &no), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(origins),
      cmocka_unit_test(session_cap_and_drain),
      cmocka_unit_test(rate_bucket),
      cmocka_unit_test(per_address),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

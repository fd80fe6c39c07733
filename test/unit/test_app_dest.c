/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/app_dest.h"
#include "stompgate/err.h"

static void matching(void **state) {
  (void)state;
  const char *const p[] = {"/app", "/svc/"};
  assert_int_equal(sg_app_match(p, 2, "/app/orders/new"), 0);
  assert_int_equal(sg_app_match(p, 2, "/app"), 0);
  assert_int_equal(sg_app_match(p, 2, "/application/x"), -1);
  assert_int_equal(sg_app_match(p, 2, "/svc/a"), 1);
  assert_int_equal(sg_app_match(p, 2, "/svcx"), -1);
  assert_int_equal(sg_app_match(p, 2, "/topic/app"), -1);
  assert_int_equal(sg_app_match(p, 0, "/app/x"), -1);
}

static void key_ok(const char *prefix, const char *dst, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_app_routing_key(&b, prefix, dst), 0);
  assert_string_equal(b.base, want);
  sg_buf_free(&b);
}

static void key_bad(const char *prefix, const char *dst) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_app_routing_key(&b, prefix, dst), SG_ERR_BAD_DESTINATION);
  assert_true(b.len == 0);
  sg_buf_free(&b);
}

static void routing_keys(void **state) {
  (void)state;
  key_ok("/app", "/app/orders/new", "orders.new");
  key_ok("/app/", "/app/orders", "orders");
  key_ok("/app", "/app/a.b/c", "a.b.c");
  key_ok("/app", "/app/x%2Fy/z", "x/y.z");
  key_bad("/app", "/app");
  key_bad("/app", "/app/");
  key_bad("/app", "/app/a//b");
  key_bad("/app", "/app/a/");
  char big[400] = "/app/";
  memset(big + 5, 'k', 300);
  big[305] = '\0';
  key_bad("/app", big);
}

static void correlation(void **state) {
  (void)state;
  sg_app_corr_t c;
  assert_int_equal(sg_app_corr_init(&c, 3), 0);
  assert_null(sg_app_corr_find(&c, "a", 1));
  assert_int_equal(sg_app_corr_add(&c, "a", "/app/1"), 0);
  assert_int_equal(sg_app_corr_add(&c, "b", "/app/2"), 0);
  assert_int_equal(sg_app_corr_add(&c, "a", "/app/3"), 0);
  assert_string_equal(sg_app_corr_find(&c, "a", 1), "/app/3");
  assert_string_equal(sg_app_corr_find(&c, "b", 1), "/app/2");
  assert_int_equal(sg_app_corr_add(&c, "c", "/app/4"), 0);
  assert_int_equal(sg_app_corr_add(&c, "d", "/app/5"), 0); /* b falls out */
  assert_null(sg_app_corr_find(&c, "b", 1));
  assert_string_equal(sg_app_corr_find(&c, "d", 1), "/app/5");
  assert_null(sg_app_corr_find(&c, "dd", 2));
  sg_app_corr_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(matching),
      cmocka_unit_test(routing_keys),
      cmocka_unit_test(correlation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

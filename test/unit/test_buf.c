/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/buf.h"
#include "stompgate/err.h"

static void append_and_consume(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_buf_appendz(&b, "hello "), 0);
  assert_int_equal(sg_buf_printf(&b, "%d-%s", 42, "x"), 0);
  assert_string_equal(b.base, "hello 42-x");
  sg_buf_consume(&b, 6);
  assert_string_equal(b.base, "42-x");
  assert_int_equal(b.len, 4);
  sg_buf_consume(&b, 100);
  assert_int_equal(b.len, 0);
  sg_buf_free(&b);
}

static void grows_large(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  char chunk[1000];
  memset(chunk, 'a', sizeof(chunk));
  for (int i = 0; i < 1000; i++) assert_int_equal(sg_buf_append(&b, chunk, sizeof(chunk)), 0);
  assert_int_equal(b.len, 1000000);
  assert_true(b.cap > b.len);
  assert_int_equal(b.base[b.len], '\0');
  sg_buf_free(&b);
}

static void strerror_texts(void **state) {
  (void)state;
  assert_string_equal(sg_strerror(SG_ERR_FRAME_TOO_LARGE), "Frame too large");
  assert_string_equal(sg_strerror(SG_ERR_BAD_ESCAPE), "Invalid header escape");
  assert_non_null(sg_strerror(-2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(append_and_consume),
      cmocka_unit_test(grows_large),
      cmocka_unit_test(strerror_texts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

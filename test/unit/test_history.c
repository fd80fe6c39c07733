/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stompgate/err.h"
#include "stompgate/history.h"

static void parse(void **state) {
  (void)state;
  sg_history_t h;
  const char *why = NULL;
  assert_int_equal(sg_history_parse("chat.#:1h", &h, &why), 0);
  assert_string_equal(h.pattern, "chat.#");
  assert_string_equal(h.retention, "1h");
  assert_string_equal(h.queue, "stompgate.history.chat.#");
  sg_history_free(&h);
  /* No retention: the default. */
  assert_int_equal(sg_history_parse("news.*", &h, &why), 0);
  assert_string_equal(h.pattern, "news.*");
  assert_string_equal(h.retention, SG_HISTORY_RETENTION_DEFAULT);
  sg_history_free(&h);
  /* A ':' inside the key stays in the pattern. */
  assert_int_equal(sg_history_parse("a:b.c", &h, &why), 0);
  assert_string_equal(h.pattern, "a:b.c");
  sg_history_free(&h);
  assert_int_equal(sg_history_parse("a.b:30m", &h, &why), 0);
  assert_string_equal(h.pattern, "a.b");
  assert_string_equal(h.retention, "30m");
  sg_history_free(&h);
  /* Invalid: an empty pattern, a bad retention, a pattern too long. */
  assert_int_equal(sg_history_parse(":1h", &h, &why), SG_ERR_INVALID);
  assert_int_equal(sg_history_parse("chat.#:1x", &h, &why), SG_ERR_INVALID);
  assert_non_null(why);
  assert_int_equal(sg_history_parse("chat.#:0h", &h, &why), SG_ERR_INVALID);
  char longp[300];
  memset(longp, 'a', sizeof(longp) - 1);
  longp[sizeof(longp) - 1] = '\0';
  assert_int_equal(sg_history_parse(longp, &h, &why), SG_ERR_INVALID);
  longp[SG_HISTORY_PATTERN_MAX] = '\0';
  assert_int_equal(sg_history_parse(longp, &h, &why), 0);
  assert_int_equal(strlen(h.queue), 255);
  sg_history_free(&h);
}

static void retention(void **state) {
  (void)state;
  static const char *good[] = {"1Y", "2M", "7D", "12h", "30m", "45s", "3600s"};
  static const char *badv[] = {"", "h", "0s", "1", "1d", "1H", "10 m", "-1h", "1.5h"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    assert_int_equal(sg_history_retention_valid(good[i], strlen(good[i])), 1);
  for (size_t i = 0; i < sizeof(badv) / sizeof(badv[0]); i++)
    assert_int_equal(sg_history_retention_valid(badv[i], strlen(badv[i])), 0);
}

static void find(void **state) {
  (void)state;
  sg_history_t v[2];
  const char *why;
  assert_int_equal(sg_history_parse("chat.*:1h", &v[0], &why), 0);
  assert_int_equal(sg_history_parse("chat.#:1D", &v[1], &why), 0);
  assert_ptr_equal(sg_history_find(v, 2, "chat.a"), &v[0]);
  assert_ptr_equal(sg_history_find(v, 2, "chat.a.b"), &v[1]);
  assert_ptr_equal(sg_history_find(v, 2, "chat.#"), &v[1]);
  assert_null(sg_history_find(v, 2, "news.a"));
  assert_null(sg_history_find(v, 2, "#"));
  sg_history_free(&v[0]);
  sg_history_free(&v[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse),
      cmocka_unit_test(retention),
      cmocka_unit_test(find),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/www.h"

static void ok(const char *path, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_www_resolve(path, strlen(path), &b), 0);
  assert_string_equal(b.base, want);
  sg_buf_free(&b);
}

static void bad(const char *path, size_t len) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_www_resolve(path, len, &b), SG_ERR_INVALID);
  assert_int_equal(b.len, 0);
  sg_buf_free(&b);
}
#define BAD(s) bad(s, strlen(s))

static void resolving(void **state) {
  (void)state;
  ok("/", "index.html");
  ok("/index.html", "index.html");
  ok("/js/app.js", "js/app.js");
  ok("/docs/", "docs/index.html");
  ok("/a%20b.txt", "a b.txt");
  ok("/x..y", "x..y");
}

static void refusing(void **state) {
  (void)state;
  BAD("");
  BAD("index.html");
  BAD("/../etc/passwd");
  BAD("/a/../../b");
  BAD("/a/./b");
  BAD("/%2e%2e/etc/passwd");
  BAD("/%2E%2e/x");
  BAD("/.git/config");
  BAD("/a/.env");
  BAD("//etc/passwd");
  BAD("/a//b");
  BAD("/a%2f..%2fb");
  BAD("/a\\..\\b");
  BAD("/a%00b");
  BAD("/a%zzb");
  BAD("/a%2");
  bad("/a\0b", 4);
  char big[1100];
  big[0] = '/';
  memset(big + 1, 'a', sizeof(big) - 1);
  bad(big, sizeof(big));
}

static void types(void **state) {
  (void)state;
  assert_string_equal(sg_www_content_type("index.html"), "text/html; charset=utf-8");
  assert_string_equal(sg_www_content_type("vendor/stomp.umd.min.js"), "text/javascript; charset=utf-8");
  assert_string_equal(sg_www_content_type("A.PNG"), "image/png");
  assert_string_equal(sg_www_content_type("noext"), "application/octet-stream");
  assert_string_equal(sg_www_content_type("dir.d/noext"), "application/octet-stream");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(resolving),
      cmocka_unit_test(refusing),
      cmocka_unit_test(types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

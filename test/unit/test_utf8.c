/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/utf8.h"

#define V(s) sg_utf8_valid(s, sizeof(s) - 1)

static void valid_text(void **state) {
  (void)state;
  assert_true(V(""));
  assert_true(V("plain ascii text that is longer than eight bytes"));
  assert_true(V("caf\xc3\xa9"));
  assert_true(V("\xe2\x82\xac euro"));
  assert_true(V("\xf0\x9f\x98\x80 emoji"));
  assert_true(V("\xf4\x8f\xbf\xbf"));  /* U+10FFFF */
  assert_true(sg_utf8_valid("a\0b", 3)); /* NUL is a valid code point */
}

static void invalid_text(void **state) {
  (void)state;
  assert_false(V("\x80"));
  assert_false(V("\xc0\xaf"));             /* overlong '/' */
  assert_false(V("\xe0\x80\xaf"));         /* overlong */
  assert_false(V("\xed\xa0\x80"));         /* surrogate */
  assert_false(V("\xf4\x90\x80\x80"));     /* above U+10FFFF */
  assert_false(V("\xf5\x80\x80\x80"));
  assert_false(V("abc\xc3"));              /* truncated */
  assert_false(V("abcdefgh\xe2\x82"));     /* truncated after an ASCII run */
  assert_false(V("\xc3\x28"));             /* bad continuation */
  assert_false(V("\xff"));
}

static void all_bytes_binary(void **state) {
  (void)state;
  unsigned char b[256];
  for (int i = 0; i < 256; i++) b[i] = (unsigned char)i;
  assert_false(sg_utf8_valid(b, sizeof(b)));
  assert_true(sg_utf8_valid(b, 128));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(valid_text),
      cmocka_unit_test(invalid_text),
      cmocka_unit_test(all_bytes_binary),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/user_dest.h"

static void sub_ok(const char *user, const char *dst, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_user_dest_subscribe_key(&b, user, dst), 0);
  assert_string_equal(b.base, want);
  sg_buf_free(&b);
}

static void send_ok(const char *dst, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_user_dest_send_key(&b, dst), 0);
  assert_string_equal(b.base, want);
  sg_buf_free(&b);
}

static void sub_bad(const char *user, const char *dst) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_user_dest_subscribe_key(&b, user, dst), SG_ERR_BAD_DESTINATION);
  assert_true(b.len == 0);
  sg_buf_free(&b);
}

static void send_bad(const char *dst) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_user_dest_send_key(&b, dst), SG_ERR_BAD_DESTINATION);
  assert_true(b.len == 0);
  sg_buf_free(&b);
}

static void keys(void **state) {
  (void)state;
  assert_true(sg_user_dest_is("/user/queue/x"));
  assert_false(sg_user_dest_is("/users/queue/x"));
  assert_false(sg_user_dest_is("/queue/user/x"));
  sub_ok("alice", "/user/queue/inbox", "user.alice.inbox");
  send_ok("/user/alice/queue/inbox", "user.alice.inbox");
  /* Both sides agree whatever the names hold. */
  sub_ok("a.b", "/user/queue/c", "user.a%2Eb.c");
  send_ok("/user/a.b/queue/c", "user.a%2Eb.c");
  sub_ok("a", "/user/queue/b.c", "user.a.b%2Ec");
  send_ok("/user/a/queue/b.c", "user.a.b%2Ec");
  sub_ok("bob@example.com", "/user/queue/x y", "user.bob%40example%2Ecom.x%20y");
  send_ok("/user/bob@example.com/queue/x y", "user.bob%40example%2Ecom.x%20y");
  /* %2F in a destination stands for '/', as in every STOMP name. */
  send_ok("/user/a%2Fb/queue/c", "user.a%2Fb.c");
  sub_ok("a/b", "/user/queue/c", "user.a%2Fb.c");
  sub_ok("u", "/user/queue/a/b", "user.u.a%2Fb");
  send_ok("/user/u/queue/a/b", "user.u.a%2Fb");
  /* Wildcards and '%' are escaped: no key reaches another user's. */
  sub_ok("u", "/user/queue/#", "user.u.%23");
  sub_ok("u", "/user/queue/*", "user.u.%2A");
  sub_ok("u", "/user/queue/%25", "user.u.%25");
  sub_ok("a%2Eb", "/user/queue/c", "user.a%252Eb.c");
  sub_ok("u-1_x", "/user/queue/Q-2_y", "user.u-1_x.Q-2_y");
}

static void refusals(void **state) {
  (void)state;
  sub_bad("u", "/user/queue/");
  sub_bad("u", "/user/alice/queue/inbox");
  sub_bad("u", "/user/topic/x");
  sub_bad("u", "/queue/x");
  sub_bad("u", "/user/queue/%zz");
  sub_bad("u", "/user/queue/a%2");
  sub_bad("", "/user/queue/x");
  send_bad("/user/alice");
  send_bad("/user/alice/queue/");
  send_bad("/user//queue/x");
  send_bad("/user/alice/topic/x");
  send_bad("/user/queue/x"); /* a SEND names the user */
  send_bad("/queue/x");
  char big[400] = "/user/queue/";
  memset(big + 12, 'k', 300);
  big[312] = '\0';
  sub_bad("u", big);
  sg_buf_t b;
  sg_buf_init(&b);
  sg_buf_appendz(&b, "keep");
  assert_int_equal(sg_user_dest_send_key(&b, "/user/x/queue/"), SG_ERR_BAD_DESTINATION);
  assert_string_equal(b.base, "keep");
  sg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(keys), cmocka_unit_test(refusals)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}

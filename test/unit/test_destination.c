/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/destination.h"
#include "stompgate/err.h"

static void parse_ok(const char *s, sg_dest_kind_t kind, const char *name, const char *key) {
  sg_dest_t d;
  assert_int_equal(sg_dest_parse(s, strlen(s), &d), 0);
  assert_int_equal(d.kind, kind);
  assert_string_equal(d.name, name);
  assert_string_equal(d.key, key);
  sg_dest_free(&d);
}

static void parse_bad(const char *s) {
  sg_dest_t d;
  assert_int_equal(sg_dest_parse(s, strlen(s), &d), SG_ERR_BAD_DESTINATION);
}

static void forms(void **state) {
  (void)state;
  parse_ok("/exchange/amq.direct/key", SG_DEST_EXCHANGE, "amq.direct", "key");
  parse_ok("/exchange/fan", SG_DEST_EXCHANGE, "fan", "");
  parse_ok("/exchange/x/", SG_DEST_EXCHANGE, "x", "");
  parse_ok("/queue/orders", SG_DEST_QUEUE, "orders", "");
  parse_ok("/amq/queue/q1", SG_DEST_AMQ_QUEUE, "q1", "");
  parse_ok("/topic/a.*.#", SG_DEST_TOPIC, "a.*.#", "");
  parse_ok("/temp-queue/reply", SG_DEST_TEMP_QUEUE, "reply", "");
  parse_ok("/reply-queue/amq.gen/x", SG_DEST_REPLY_QUEUE, "amq.gen/x", "");
}

static void escapes(void **state) {
  (void)state;
  parse_ok("/queue/a%2Fb", SG_DEST_QUEUE, "a/b", "");
  parse_ok("/exchange/e%2Fx/k%2Fy", SG_DEST_EXCHANGE, "e/x", "k/y");
  parse_ok("/topic/100%", SG_DEST_TOPIC, "100%", "");
}

static void invalid(void **state) {
  (void)state;
  parse_bad("");
  parse_bad("/queue");
  parse_bad("/queue/");
  parse_bad("/queuex");
  parse_bad("/queue/a/b");
  parse_bad("/topic/a/b");
  parse_bad("/exchange/");
  parse_bad("/exchange//k");
  parse_bad("/exchange/x/k/z");
  parse_bad("/reply-queue/");
  parse_bad("/unknown/x");
  parse_bad("queue/x");
}

static void targets(void **state) {
  (void)state;
  sg_dest_t d;
  const char *e, *k;
  assert_int_equal(sg_dest_parse("/topic/t", 8, &d), 0);
  assert_int_equal(sg_dest_publish_target(&d, &e, &k), 0);
  assert_string_equal(e, "amq.topic");
  assert_string_equal(k, "t");
  sg_dest_free(&d);
  assert_int_equal(sg_dest_parse("/queue/q", 8, &d), 0);
  assert_int_equal(sg_dest_publish_target(&d, &e, &k), 0);
  assert_string_equal(e, "");
  assert_string_equal(k, "q");
  sg_dest_free(&d);
  assert_int_equal(sg_dest_parse("/temp-queue/t", 13, &d), 0);
  assert_int_equal(sg_dest_publish_target(&d, &e, &k), SG_ERR_BAD_DESTINATION);
  sg_dest_free(&d);
}

static void format(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  sg_dest_format(&b, "", 0, "q1", 2);
  assert_string_equal(b.base, "/queue/q1");
  sg_buf_reset(&b);
  sg_dest_format(&b, "amq.topic", 9, "a.b", 3);
  assert_string_equal(b.base, "/topic/a.b");
  sg_buf_reset(&b);
  sg_dest_format(&b, "ex", 2, "", 0);
  assert_string_equal(b.base, "/exchange/ex");
  sg_buf_reset(&b);
  sg_dest_format(&b, "e/x", 3, "k%", 2);
  assert_string_equal(b.base, "/exchange/e%2Fx/k%25");
  sg_buf_free(&b);
}

static void queue_args(void **state) {
  (void)state;
  assert_int_equal(sg_dest_queue_arg_type("x-message-ttl"), SG_QARG_INT);
  assert_int_equal(sg_dest_queue_arg_type("x-max-priority"), SG_QARG_INT);
  assert_int_equal(sg_dest_queue_arg_type("x-queue-type"), SG_QARG_STR);
  assert_int_equal(sg_dest_queue_arg_type("x-max-age"), SG_QARG_STR);
  assert_int_equal(sg_dest_queue_arg_type("x-dead-letter-routing-key"), SG_QARG_STR);
  assert_int_equal(sg_dest_queue_arg_type("x-custom"), SG_QARG_NONE);
  assert_int_equal(sg_dest_queue_arg_type("content-type"), SG_QARG_NONE);
}

static void ints(void **state) {
  (void)state;
  int64_t v;
  assert_int_equal(sg_dest_parse_int("0", &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(sg_dest_parse_int("60000", &v), 0);
  assert_int_equal(v, 60000);
  assert_int_equal(sg_dest_parse_int("-5", &v), 0);
  assert_int_equal(v, -5);
  assert_int_equal(sg_dest_parse_int("9223372036854775807", &v), 0);
  assert_true(v == INT64_MAX);
  assert_int_equal(sg_dest_parse_int("-9223372036854775808", &v), 0);
  assert_true(v == INT64_MIN);
  assert_int_equal(sg_dest_parse_int("9223372036854775808", &v), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_int("99999999999999999999", &v), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_int("", &v), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_int("-", &v), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_int("12a", &v), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_int(" 1", &v), SG_ERR_INVALID);
}

static void stream_offsets(void **state) {
  (void)state;
  sg_stream_offset_t o;
  assert_int_equal(sg_dest_parse_stream_offset("first", &o), 0);
  assert_int_equal(o.kind, SG_STREAM_FIRST);
  assert_int_equal(sg_dest_parse_stream_offset("last", &o), 0);
  assert_int_equal(o.kind, SG_STREAM_LAST);
  assert_int_equal(sg_dest_parse_stream_offset("next", &o), 0);
  assert_int_equal(o.kind, SG_STREAM_NEXT);
  assert_int_equal(sg_dest_parse_stream_offset("offset=42", &o), 0);
  assert_int_equal(o.kind, SG_STREAM_OFFSET);
  assert_int_equal(o.value, 42);
  assert_int_equal(sg_dest_parse_stream_offset("timestamp=1700000000", &o), 0);
  assert_int_equal(o.kind, SG_STREAM_TIMESTAMP);
  assert_int_equal(o.value, 1700000000);
  assert_int_equal(sg_dest_parse_stream_offset("offset=-1", &o), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_stream_offset("offset=", &o), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_stream_offset("middle", &o), SG_ERR_INVALID);
  assert_int_equal(sg_dest_parse_stream_offset("", &o), SG_ERR_INVALID);
}

static void durable_names(void **state) {
  (void)state;
  char a[SG_DEST_DURABLE_NAME_SIZE], b[SG_DEST_DURABLE_NAME_SIZE], c[SG_DEST_DURABLE_NAME_SIZE];
  sg_dest_durable_queue_name("sub-1", 5, a);
  sg_dest_durable_queue_name("sub-1", 5, b);
  sg_dest_durable_queue_name("sub-2", 5, c);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  assert_int_equal(strlen(a), SG_DEST_DURABLE_NAME_SIZE - 1);
  assert_memory_equal(a, "stomp-subscription-", 19);
  /* SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223. */
  sg_dest_durable_queue_name("abc", 3, a);
  assert_string_equal(a, "stomp-subscription-ba7816bf8f01cfea414140de5dae2223");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(forms),   cmocka_unit_test(escapes), cmocka_unit_test(invalid),
      cmocka_unit_test(targets), cmocka_unit_test(format),
      cmocka_unit_test(queue_args), cmocka_unit_test(ints),
      cmocka_unit_test(stream_offsets), cmocka_unit_test(durable_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

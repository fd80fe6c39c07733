/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "stompgate/amqp_table.h"

static void check(const amqp_field_value_t *v, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_amqp_field_render(&b, v), 0);
  assert_int_equal(b.len, strlen(want));
  assert_memory_equal(b.base, want, b.len);
  sg_buf_free(&b);
}

static amqp_field_value_t str(const char *s) {
  amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_UTF8};
  v.value.bytes = amqp_cstring_bytes(s);
  return v;
}

static void scalars(void **state) {
  (void)state;
  amqp_field_value_t v = str("plain:text");
  check(&v, "plain:text");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1};
  check(&v, "true");
  v.value.boolean = 0;
  check(&v, "false");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = -7};
  check(&v, "-7");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_MIN};
  check(&v, "-9223372036854775808");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_U8, .value.u8 = 255};
  check(&v, "255");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000};
  check(&v, "1700000000");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.5};
  check(&v, "2.5");
  v.value.f64 = 0.1;
  check(&v, "0.1");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_F32, .value.f32 = 0.5f};
  check(&v, "0.5");
  v = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_VOID};
  check(&v, "");
}

static void decimals(void **state) {
  (void)state;
  amqp_field_value_t v = {.kind = AMQP_FIELD_KIND_DECIMAL};
  v.value.decimal = (amqp_decimal_t){2, 1234};
  check(&v, "12.34");
  v.value.decimal = (amqp_decimal_t){0, 5};
  check(&v, "5");
  v.value.decimal = (amqp_decimal_t){3, 5};
  check(&v, "0.005");
  v.value.decimal = (amqp_decimal_t){2, 12};
  check(&v, "0.12");
  v.value.decimal = (amqp_decimal_t){1, 0};
  check(&v, "0.0");
}

static void nested(void **state) {
  (void)state;
  amqp_table_entry_t inner[2];
  inner[0].key = amqp_cstring_bytes("q\"k");
  inner[0].value = str("line\nbreak");
  inner[1].key = amqp_cstring_bytes("v");
  inner[1].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_VOID};
  amqp_field_value_t arr[3];
  arr[0] = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I16, .value.i16 = 2};
  arr[1] = str("s");
  arr[2] = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_TABLE, .value.table = {2, inner}};
  amqp_table_entry_t outer[3];
  outer[0].key = amqp_cstring_bytes("a");
  outer[0].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_ARRAY, .value.array = {3, arr}};
  outer[1].key = amqp_cstring_bytes("d");
  outer[1].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_DECIMAL,
                                        .value.decimal = {1, 15}};
  outer[2].key = amqp_cstring_bytes("ok");
  outer[2].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1};
  amqp_field_value_t t = {.kind = AMQP_FIELD_KIND_TABLE, .value.table = {3, outer}};
  check(&t, "{\"a\":[2,\"s\",{\"q\\\"k\":\"line\\u000abreak\",\"v\":null}],\"d\":1.5,\"ok\":true}");
  amqp_field_value_t empty = {.kind = AMQP_FIELD_KIND_ARRAY, .value.array = {0, NULL}};
  check(&empty, "[]");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(scalars),
      cmocka_unit_test(decimals),
      cmocka_unit_test(nested),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

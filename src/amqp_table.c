/* SPDX-License-Identifier: MIT */
#include "stompgate/amqp_table.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

/* The shortest %g form that reads back as the same double, so 2.5 is "2.5"
 * and 0.1 is "0.1" rather than seventeen digits of binary noise. */
static int append_double(sg_buf_t *out, double d) {
  char tmp[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  return sg_buf_appendz(out, tmp);
}

static int append_decimal(sg_buf_t *out, uint8_t places, uint32_t value) {
  char digits[16];
  int n = snprintf(digits, sizeof(digits), "%" PRIu32, value);
  if (places == 0) return sg_buf_append(out, digits, (size_t)n);
  int r = 0;
  if (places >= n) {
    /* 0.00ddd: pad with zeros after the point. */
    r = sg_buf_appendz(out, "0.");
    for (int i = 0; r == 0 && i < places - n; i++) r = sg_buf_append(out, "0", 1);
    return r ? r : sg_buf_append(out, digits, (size_t)n);
  }
  if ((r = sg_buf_append(out, digits, (size_t)(n - places))) || (r = sg_buf_append(out, ".", 1)))
    return r;
  return sg_buf_append(out, digits + n - places, places);
}

static int append_json_string(sg_buf_t *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  int r = sg_buf_append(out, "\"", 1);
  for (size_t i = 0; r == 0 && i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      r = sg_buf_append(out, e, 2);
    } else if (c < 0x20 || c == 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      r = sg_buf_append(out, e, 6);
    } else {
      r = sg_buf_append(out, &s[i], 1);
    }
  }
  return r ? r : sg_buf_append(out, "\"", 1);
}

static int render(sg_buf_t *out, const amqp_field_value_t *v, int json, int depth);

static int render_table(sg_buf_t *out, const amqp_table_t *t, int depth) {
  int r = sg_buf_append(out, "{", 1);
  for (int i = 0; r == 0 && i < t->num_entries; i++) {
    if (i && (r = sg_buf_append(out, ",", 1))) break;
    const amqp_table_entry_t *e = &t->entries[i];
    if ((r = append_json_string(out, e->key.bytes, e->key.len)) || (r = sg_buf_append(out, ":", 1)))
      break;
    r = render(out, &e->value, 1, depth + 1);
  }
  return r ? r : sg_buf_append(out, "}", 1);
}

static int render_array(sg_buf_t *out, const amqp_array_t *a, int depth) {
  int r = sg_buf_append(out, "[", 1);
  for (int i = 0; r == 0 && i < a->num_entries; i++) {
    if (i && (r = sg_buf_append(out, ",", 1))) break;
    r = render(out, &a->entries[i], 1, depth + 1);
  }
  return r ? r : sg_buf_append(out, "]", 1);
}

static int render(sg_buf_t *out, const amqp_field_value_t *v, int json, int depth) {
  /* librabbitmq bounds nesting when it decodes; this is a second fence. */
  if (depth > 64) return json ? sg_buf_appendz(out, "null") : 0;
  switch (v->kind) {
  case AMQP_FIELD_KIND_UTF8:
  case AMQP_FIELD_KIND_BYTES:
    return json ? append_json_string(out, v->value.bytes.bytes, v->value.bytes.len)
                : sg_buf_append(out, v->value.bytes.bytes, v->value.bytes.len);
  case AMQP_FIELD_KIND_BOOLEAN: return sg_buf_appendz(out, v->value.boolean ? "true" : "false");
  case AMQP_FIELD_KIND_I8: return sg_buf_printf(out, "%d", v->value.i8);
  case AMQP_FIELD_KIND_U8: return sg_buf_printf(out, "%u", v->value.u8);
  case AMQP_FIELD_KIND_I16: return sg_buf_printf(out, "%d", v->value.i16);
  case AMQP_FIELD_KIND_U16: return sg_buf_printf(out, "%u", v->value.u16);
  case AMQP_FIELD_KIND_I32: return sg_buf_printf(out, "%" PRId32, v->value.i32);
  case AMQP_FIELD_KIND_U32: return sg_buf_printf(out, "%" PRIu32, v->value.u32);
  case AMQP_FIELD_KIND_I64: return sg_buf_printf(out, "%" PRId64, v->value.i64);
  case AMQP_FIELD_KIND_U64:
  case AMQP_FIELD_KIND_TIMESTAMP: return sg_buf_printf(out, "%" PRIu64, v->value.u64);
  case AMQP_FIELD_KIND_F32: return append_double(out, (double)v->value.f32);
  case AMQP_FIELD_KIND_F64: return append_double(out, v->value.f64);
  case AMQP_FIELD_KIND_DECIMAL:
    return append_decimal(out, v->value.decimal.decimals, v->value.decimal.value);
  case AMQP_FIELD_KIND_TABLE: return render_table(out, &v->value.table, depth);
  case AMQP_FIELD_KIND_ARRAY: return render_array(out, &v->value.array, depth);
  case AMQP_FIELD_KIND_VOID:
  default: return json ? sg_buf_appendz(out, "null") : 0;
  }
}

int sg_amqp_field_render(sg_buf_t *out, const amqp_field_value_t *v) {
  /* An empty result must still leave a terminated buffer. */
  int r = sg_buf_reserve(out, 1);
  return r ? r : render(out, v, 0, 0);
}

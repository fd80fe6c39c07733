/* SPDX-License-Identifier: MIT */
/* Parses arbitrary destination strings; for each that parses, formats its
 * publish target the way a delivery's destination header is built and
 * parses that again: it must name the same exchange and routing key. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/buf.h"
#include "stompgate/destination.h"
#include "stompgate/err.h"

/* True when format -> parse is expected to give s back unchanged: '%' is
 * written as %25, which the parser does not decode (RabbitMQ's rule), and
 * bytes outside 0x20..0x7f come back as %XX. */
static int plain(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%' || c < 0x20 || c > 0x7f) return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sg_dest_t d;
  int r = sg_dest_parse((const char *)data, size, &d);
  if (r != 0) {
    FZ_CHECK(r == SG_ERR_BAD_DESTINATION || r == SG_ERR_NOMEM);
    FZ_CHECK(d.name == NULL && d.key == NULL);
    return 0;
  }
  FZ_CHECK(d.name != NULL && d.key != NULL);
  FZ_CHECK(strlen(d.name) == d.name_len && strlen(d.key) == d.key_len);
  FZ_CHECK(d.name_len > 0 && d.name_len <= size);

  const char *ex = NULL, *rk = NULL;
  r = sg_dest_publish_target(&d, &ex, &rk);
  if (d.kind == SG_DEST_TEMP_QUEUE) {
    FZ_CHECK(r == SG_ERR_BAD_DESTINATION);
    sg_dest_free(&d);
    return 0;
  }
  FZ_CHECK(r == 0 && ex != NULL && rk != NULL);

  sg_buf_t out;
  sg_buf_init(&out);
  FZ_CHECK(sg_dest_format(&out, ex, strlen(ex), rk, strlen(rk)) == 0);
  for (size_t i = 0; i < out.len; i++) {
    unsigned char c = (unsigned char)out.base[i];
    FZ_CHECK(c >= 0x20 && c <= 0x7f);
  }
  /* amq.topic with an empty key is written "/topic/" as RabbitMQ does, and
   * that names no destination a client may use: nothing to compare. */
  int empty_topic = strcmp(ex, "amq.topic") == 0 && rk[0] == '\0';
  if (plain(ex, strlen(ex)) && plain(rk, strlen(rk)) && !empty_topic) {
    sg_dest_t back;
    FZ_CHECK(sg_dest_parse(out.base, out.len, &back) == 0);
    const char *ex2 = NULL, *rk2 = NULL;
    FZ_CHECK(sg_dest_publish_target(&back, &ex2, &rk2) == 0);
    FZ_CHECK(strcmp(ex, ex2) == 0 && strcmp(rk, rk2) == 0);
    sg_dest_free(&back);
  }
  sg_buf_free(&out);
  sg_dest_free(&d);
  return 0;
}

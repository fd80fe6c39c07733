/* SPDX-License-Identifier: MIT */
/* The RFC 6455 request-head parser on arbitrary bytes. The first byte picks
 * the head limit. Checks: slices stay inside the input, an accepted upgrade
 * has a 28-character accept value, the answer does not depend on bytes
 * past the head, and every prefix of a complete head asks for more input
 * (or is refused as too large), so feeding a socket read by read agrees
 * with parsing the whole head at once. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/buf.h"
#include "stompgate/err.h"
#include "stompgate/http_upgrade.h"

static void check_slice(sg_http_slice_t s, const uint8_t *buf, size_t head) {
  if (s.p == NULL) {
    FZ_CHECK(s.len == 0);
    return;
  }
  FZ_CHECK((const uint8_t *)s.p >= buf && (const uint8_t *)s.p + s.len <= buf + head);
}

static int parse(const uint8_t *buf, size_t len, const sg_http_upgrade_opts_t *o,
                 sg_http_request_t *req) {
  /* An exact-size copy so that ASan catches any read past len. */
  char *copy = malloc(len ? len : 1);
  FZ_CHECK(copy != NULL);
  memcpy(copy, buf, len);
  int r = sg_http_upgrade_parse(copy, len, o, req);
  /* Rebase the slices onto buf so that callers can compare them. */
  sg_http_slice_t *sl[] = {&req->method, &req->path,   &req->query,      &req->host,
                           &req->origin, &req->authorization, &req->user_agent,
                           &req->forwarded_for};
  for (size_t i = 0; i < sizeof(sl) / sizeof(sl[0]); i++)
    if (sl[i]->p) sl[i]->p = (const char *)buf + (sl[i]->p - copy);
  free(copy);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  sg_http_upgrade_opts_t o = {.ws_path = (data[0] & 1) ? "/ws" : "/stomp",
                              .max_head_size = 16 + (size_t)(data[0] >> 1) * 32};
  const uint8_t *buf = data + 1;
  size_t len = size - 1;

  sg_http_request_t req;
  int r = parse(buf, len, &o, &req);
  if (r == SG_ERR_AGAIN) {
    FZ_CHECK(len <= o.max_head_size);
    return 0;
  }
  FZ_CHECK(r == 0);
  FZ_CHECK(req.status == 101 || req.status == 400 || req.status == 404 || req.status == 405 ||
           req.status == 426 || req.status == 431);
  sg_buf_t out;
  sg_buf_init(&out);
  int early = req.status == 400 && req.head_len == 0;
  if (req.status == 431) {
    FZ_CHECK(len > o.max_head_size);
  } else if (early) {
    /* Refused from the request line alone: more bytes change nothing. */
    FZ_CHECK(strcmp(req.reason, "Malformed request line") == 0);
    uint8_t *more = malloc(len + 4);
    FZ_CHECK(more != NULL);
    memcpy(more, buf, len);
    memcpy(more + len, "\r\n\r\n", 4);
    sg_http_request_t again;
    FZ_CHECK(parse(more, len + 4, &o, &again) == 0 && again.status == 400);
    free(more);
  } else {
    FZ_CHECK(req.head_len > 0 && req.head_len <= len && req.head_len <= o.max_head_size);
    check_slice(req.method, buf, req.head_len);
    check_slice(req.path, buf, req.head_len);
    check_slice(req.query, buf, req.head_len);
    check_slice(req.host, buf, req.head_len);
    check_slice(req.origin, buf, req.head_len);
    check_slice(req.authorization, buf, req.head_len);
    check_slice(req.user_agent, buf, req.head_len);
    check_slice(req.forwarded_for, buf, req.head_len);

    /* Bytes after the head (the first WebSocket frames) change nothing. */
    sg_http_request_t again;
    FZ_CHECK(parse(buf, req.head_len, &o, &again) == 0);
    FZ_CHECK(again.status == req.status && again.head_len == req.head_len);
    FZ_CHECK(again.stomp_version == req.stomp_version);

    /* A head cut short is incomplete, never answered early, unless its
     * request line already shows that it is not HTTP. */
    int bad_line = req.status == 400 && strcmp(req.reason, "Malformed request line") == 0;
    for (size_t cut = 1; cut <= 4 && cut < req.head_len; cut++) {
      sg_http_request_t part;
      int pr = parse(buf, req.head_len - cut, &o, &part);
      FZ_CHECK(pr == SG_ERR_AGAIN || (bad_line && pr == 0 && part.status == 400 &&
                                      strcmp(part.reason, req.reason) == 0));
    }
  }
  if (req.status == 101) {
    FZ_CHECK(strlen(req.accept) == 28);
    FZ_CHECK(req.stomp_version == 0 || req.stomp_version == 10 || req.stomp_version == 11 ||
             req.stomp_version == 12);
    FZ_CHECK(sg_http_upgrade_accept(&req, NULL, &out) == 0);
    FZ_CHECK(out.len > 0 && memcmp(out.base, "HTTP/1.1 101 ", 13) == 0);
  } else {
    FZ_CHECK(req.reason != NULL);
    FZ_CHECK(sg_http_response_error(&out, req.status, req.reason, req.extra_header) == 0);
    FZ_CHECK(memcmp(out.base, "HTTP/1.1 ", 9) == 0);
  }
  sg_buf_free(&out);
  return 0;
}

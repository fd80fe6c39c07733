/* SPDX-License-Identifier: MIT */
/* The PROXY protocol parser fed any bytes, whole and in every split: a
 * header is found at the same length whatever follows it, every shorter
 * prefix asks for more, and a refusal stays a refusal as bytes come. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"

static int parse(const uint8_t *b, size_t n, sg_proxy_info_t *info) {
  /* An exact-size copy so that ASan catches any read past n. */
  uint8_t *copy = malloc(n ? n : 1);
  FZ_CHECK(copy != NULL);
  memcpy(copy, b, n);
  int r = sg_proxy_parse(copy, n, info);
  free(copy);
  return r;
}

/* The same bytes as an X-Forwarded-For or Forwarded value (an exact-size
 * copy) and as a --trusted-proxy block: an answer is an IP address. */
static void forwarded(const uint8_t *data, size_t size) {
  char *copy = malloc(size ? size : 1);
  FZ_CHECK(copy != NULL);
  memcpy(copy, data, size);
  sg_cidr_t trusted[2];
  FZ_CHECK(sg_cidr_parse("10.0.0.0/8", &trusted[0]) == 0);
  FZ_CHECK(sg_cidr_parse("fd00::/8", &trusted[1]) == 0);
  for (int rfc = 0; rfc < 2; rfc++) {
    struct sockaddr_storage ss;
    int r = sg_forwarded_client(copy, size, rfc, trusted, 2, &ss);
    FZ_CHECK(r == 0 || r == SG_ERR_INVALID);
    FZ_CHECK(r != 0 || ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
  }
  free(copy);
  char *z = malloc(size + 1);
  FZ_CHECK(z != NULL);
  memcpy(z, data, size);
  z[size] = '\0';
  sg_cidr_t c;
  if (sg_cidr_parse(z, &c) == 0) {
    FZ_CHECK(c.family == AF_INET ? c.bits <= 32 : c.family == AF_INET6 && c.bits <= 128);
    /* A block contains its own network address. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)c.family;
    if (c.family == AF_INET) memcpy(&((struct sockaddr_in *)&ss)->sin_addr, c.addr, 4);
    else memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, c.addr, 16);
    FZ_CHECK(sg_cidr_match(&c, 1, (struct sockaddr *)&ss));
  }
  free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  forwarded(data, size);
  sg_proxy_info_t info;
  int r = parse(data, size, &info);
  FZ_CHECK(r == 0 || r == SG_ERR_AGAIN || r == SG_ERR_INVALID);
  if (r == SG_ERR_AGAIN) {
    FZ_CHECK(size < 16 + SG_PROXY_V2_MAX_BLOCK);
    return 0;
  }
  if (r == SG_ERR_INVALID) {
    /* More bytes do not make it a header. */
    uint8_t *more = malloc(size + 16);
    FZ_CHECK(more != NULL);
    memcpy(more, data, size);
    memset(more + size, '\n', 16);
    FZ_CHECK(parse(more, size + 16, &info) == SG_ERR_INVALID);
    free(more);
    return 0;
  }
  size_t h = info.header_len;
  FZ_CHECK(h > 0 && h <= size);
  FZ_CHECK(info.version == 1 || info.version == 2);
  FZ_CHECK(info.version == 2 || h <= SG_PROXY_V1_MAX);
  FZ_CHECK(info.local || info.src.ss_family == AF_INET || info.src.ss_family == AF_INET6);
  FZ_CHECK(info.local || info.src.ss_family == info.dst.ss_family);
  sg_proxy_info_t again;
  FZ_CHECK(parse(data, h, &again) == 0);
  FZ_CHECK(again.header_len == h && again.local == info.local &&
           memcmp(&again.src, &info.src, sizeof(info.src)) == 0);
  for (size_t k = 0; k < h; k++) FZ_CHECK(parse(data, k, &again) == SG_ERR_AGAIN);
  return 0;
}

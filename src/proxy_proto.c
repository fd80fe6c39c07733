/* SPDX-License-Identifier: MIT */
#include "stompgate/proxy_proto.h"

#include <arpa/inet.h>
#include <string.h>

#include "stompgate/err.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

/* A port: 0..65535 in decimal, no leading zero. -1 otherwise. */
static long port(const char *s, size_t n) {
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v <= 65535 ? v : -1;
}

/* The address in s[0..n) of family af into ss, with port p. 0 or -1. */
static int address(int af, const char *s, size_t n, long p, struct sockaddr_storage *ss) {
  char tmp[INET6_ADDRSTRLEN];
  if (n == 0 || n >= sizeof(tmp) || p < 0) return -1;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  memset(ss, 0, sizeof(*ss));
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    return inet_pton(AF_INET, tmp, &a->sin_addr) == 1 ? 0 : -1;
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  a->sin6_family = AF_INET6;
  a->sin6_port = htons((uint16_t)p);
  return inet_pton(AF_INET6, tmp, &a->sin6_addr) == 1 ? 0 : -1;
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", or
 * "PROXY UNKNOWN[ anything]\r\n": fields separated by one space. */
static int parse_v1(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  const char *s = (const char *)buf;
  size_t n = len < SG_PROXY_V1_MAX ? len : SG_PROXY_V1_MAX;
  const char *lf = memchr(s, '\n', n);
  if (lf == NULL) {
    /* Only printable ASCII before the line end, and no line longer than
     * the format allows. */
    for (size_t i = sizeof(v1_sig) - 1; i < n; i++)
      if ((s[i] < 0x20 || s[i] > 0x7e) && !(s[i] == '\r' && i == len - 1)) return SG_ERR_INVALID;
    return len >= SG_PROXY_V1_MAX ? SG_ERR_INVALID : SG_ERR_AGAIN;
  }
  size_t line = (size_t)(lf - s);
  if (line < sizeof(v1_sig) || s[line - 1] != '\r') return SG_ERR_INVALID;
  const char *p = s + sizeof(v1_sig) - 1, *end = s + line - 1;
  for (const char *c = p; c < end; c++)
    if (*c < 0x20 || *c > 0x7e) return SG_ERR_INVALID;
  memset(info, 0, sizeof(*info));
  info->version = 1;
  info->header_len = line + 1;
  if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
    info->local = 1;
    return 0;
  }
  int af;
  if ((size_t)(end - p) > 5 && memcmp(p, "TCP4 ", 5) == 0) af = AF_INET;
  else if ((size_t)(end - p) > 5 && memcmp(p, "TCP6 ", 5) == 0) af = AF_INET6;
  else return SG_ERR_INVALID;
  p += 5;
  const char *f[4];
  size_t fl[4];
  for (int i = 0; i < 4; i++) {
    const char *sp = i < 3 ? memchr(p, ' ', (size_t)(end - p)) : end;
    if (sp == NULL) return SG_ERR_INVALID;
    f[i] = p;
    fl[i] = (size_t)(sp - p);
    if (fl[i] == 0) return SG_ERR_INVALID;
    p = sp + (i < 3);
  }
  if (memchr(f[3], ' ', fl[3]) != NULL) return SG_ERR_INVALID;
  if (address(af, f[0], fl[0], port(f[2], fl[2]), &info->src) != 0 ||
      address(af, f[1], fl[1], port(f[3], fl[3]), &info->dst) != 0)
    return SG_ERR_INVALID;
  return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  if (len < 16) {
    /* What has come of the fixed part must already make sense. */
    if (len > 12 && (buf[12] >> 4) != 2) return SG_ERR_INVALID;
    return SG_ERR_AGAIN;
  }
  uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13] >> 4, proto = buf[13] & 0x0f;
  size_t block = ((size_t)buf[14] << 8) | buf[15];
  if (ver != 2 || cmd > 1 || fam > 3 || proto > 2 || block > SG_PROXY_V2_MAX_BLOCK)
    return SG_ERR_INVALID;
  static const size_t addr_len[4] = {0, 12, 36, 216};
  if (block < addr_len[fam]) return SG_ERR_INVALID;
  if (len < 16 + block) return SG_ERR_AGAIN;
  /* TLVs fill the rest of the block exactly: type, 16-bit length, value. */
  const uint8_t *t = buf + 16 + addr_len[fam], *e = buf + 16 + block;
  while (t < e) {
    if (e - t < 3) return SG_ERR_INVALID;
    size_t tl = ((size_t)t[1] << 8) | t[2];
    if ((size_t)(e - t - 3) < tl) return SG_ERR_INVALID;
    t += 3 + tl;
  }
  memset(info, 0, sizeof(*info));
  info->version = 2;
  info->header_len = 16 + block;
  /* LOCAL: the balancer speaking for itself. UNSPEC and UNIX carry no IP
   * address, and a datagram transport is not this connection's. */
  if (cmd == 0 || fam == 0 || fam == 3 || proto != 1) {
    info->local = 1;
    return 0;
  }
  const uint8_t *a = buf + 16;
  if (fam == 1) {
    struct sockaddr_in *s = (struct sockaddr_in *)&info->src, *d = (struct sockaddr_in *)&info->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src,
                        *d = (struct sockaddr_in6 *)&info->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
  }
  return 0;
}

int sg_proxy_parse(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  if (len == 0) return SG_ERR_AGAIN;
  /* The signatures decide at their first differing byte. */
  if (buf[0] == v2_sig[0]) {
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(buf, v2_sig, n) != 0) return SG_ERR_INVALID;
    return len < sizeof(v2_sig) ? SG_ERR_AGAIN : parse_v2(buf, len, info);
  }
  size_t n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
  if (memcmp(buf, v1_sig, n) != 0) return SG_ERR_INVALID;
  return len < sizeof(v1_sig) - 1 ? SG_ERR_AGAIN : parse_v1(buf, len, info);
}

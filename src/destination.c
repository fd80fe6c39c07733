/* SPDX-License-Identifier: MIT */
#include "stompgate/destination.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

/* Copies s[0..n) with "%2F" turned into '/'. */
static char *unescape_part(const char *s, size_t n, size_t *out_len) {
  char *o = malloc(n + 1);
  if (o == NULL) return NULL;
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && s[i + 1] == '2' && (s[i + 2] == 'F' || s[i + 2] == 'f')) {
      o[w++] = '/';
      i += 2;
    } else {
      o[w++] = s[i];
    }
  }
  o[w] = '\0';
  *out_len = w;
  return o;
}

static int set_parts(sg_dest_t *d, const char *name, size_t nl, const char *key, size_t kl) {
  d->name = unescape_part(name, nl, &d->name_len);
  d->key = unescape_part(key, kl, &d->key_len);
  if (d->name == NULL || d->key == NULL) {
    sg_dest_free(d);
    return SG_ERR_NOMEM;
  }
  return 0;
}

int sg_dest_parse(const char *s, size_t len, sg_dest_t *d) {
  static const struct {
    const char *prefix;
    sg_dest_kind_t kind;
  } forms[] = {
      {"/exchange/", SG_DEST_EXCHANGE},     {"/queue/", SG_DEST_QUEUE},
      {"/amq/queue/", SG_DEST_AMQ_QUEUE},   {"/topic/", SG_DEST_TOPIC},
      {"/temp-queue/", SG_DEST_TEMP_QUEUE}, {"/reply-queue/", SG_DEST_REPLY_QUEUE},
  };
  memset(d, 0, sizeof(*d));
  for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    size_t pl = strlen(forms[i].prefix);
    if (len < pl || memcmp(s, forms[i].prefix, pl) != 0) continue;
    const char *rest = s + pl;
    size_t rl = len - pl;
    if (rl == 0 || memchr(rest, '\0', rl)) return SG_ERR_BAD_DESTINATION;
    d->kind = forms[i].kind;
    if (d->kind == SG_DEST_REPLY_QUEUE) return set_parts(d, rest, rl, "", 0);
    const char *slash = memchr(rest, '/', rl);
    if (d->kind != SG_DEST_EXCHANGE) {
      if (slash) return SG_ERR_BAD_DESTINATION;
      return set_parts(d, rest, rl, "", 0);
    }
    if (slash == NULL) return set_parts(d, rest, rl, "", 0);
    size_t nl = (size_t)(slash - rest);
    if (nl == 0 || memchr(slash + 1, '/', rl - nl - 1)) return SG_ERR_BAD_DESTINATION;
    return set_parts(d, rest, nl, slash + 1, rl - nl - 1);
  }
  return SG_ERR_BAD_DESTINATION;
}

void sg_dest_free(sg_dest_t *d) {
  free(d->name);
  free(d->key);
  memset(d, 0, sizeof(*d));
}

int sg_dest_publish_target(const sg_dest_t *d, const char **exchange, const char **routing_key) {
  switch (d->kind) {
  case SG_DEST_EXCHANGE:
    *exchange = d->name;
    *routing_key = d->key;
    return 0;
  case SG_DEST_TOPIC:
    *exchange = "amq.topic";
    *routing_key = d->name;
    return 0;
  case SG_DEST_QUEUE:
  case SG_DEST_AMQ_QUEUE:
  case SG_DEST_REPLY_QUEUE:
    *exchange = "";
    *routing_key = d->name;
    return 0;
  default:
    return SG_ERR_BAD_DESTINATION;
  }
}

static int append_escaped(sg_buf_t *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  if (sg_buf_reserve(out, n * 3) != 0) return SG_ERR_NOMEM;
  char *w = out->base + out->len;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '/' || c == '%' || c < 0x20 || c > 0x7f) {
      *w++ = '%';
      *w++ = hex[c >> 4];
      *w++ = hex[c & 15];
    } else {
      *w++ = (char)c;
    }
  }
  out->len = (size_t)(w - out->base);
  out->base[out->len] = '\0';
  return 0;
}

int sg_dest_format(sg_buf_t *out, const char *exchange, size_t elen, const char *rk, size_t rlen) {
  int r;
  if (elen == 0) {
    r = sg_buf_appendz(out, "/queue/");
    return r ? r : append_escaped(out, rk, rlen);
  }
  if (elen == 9 && memcmp(exchange, "amq.topic", 9) == 0) {
    r = sg_buf_appendz(out, "/topic/");
    return r ? r : append_escaped(out, rk, rlen);
  }
  if ((r = sg_buf_appendz(out, "/exchange/")) || (r = append_escaped(out, exchange, elen)))
    return r;
  if (rlen == 0) return 0;
  if ((r = sg_buf_append(out, "/", 1))) return r;
  return append_escaped(out, rk, rlen);
}

sg_qarg_type_t sg_dest_queue_arg_type(const char *name) {
  static const struct {
    const char *name;
    sg_qarg_type_t type;
  } args[] = {
      {"x-message-ttl", SG_QARG_INT},        {"x-expires", SG_QARG_INT},
      {"x-max-length", SG_QARG_INT},         {"x-max-length-bytes", SG_QARG_INT},
      {"x-max-priority", SG_QARG_INT},       {"x-dead-letter-exchange", SG_QARG_STR},
      {"x-dead-letter-routing-key", SG_QARG_STR}, {"x-queue-type", SG_QARG_STR},
      {"x-max-age", SG_QARG_STR},            {"x-overflow", SG_QARG_STR},
  };
  for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
    if (strcmp(name, args[i].name) == 0) return args[i].type;
  return SG_QARG_NONE;
}

int sg_dest_parse_int(const char *v, int64_t *out) {
  const char *p = v;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  if (*p < '0' || *p > '9') return SG_ERR_INVALID;
  uint64_t x = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return SG_ERR_INVALID;
    unsigned d = (unsigned)(*p - '0');
    if (x > (UINT64_MAX - d) / 10) return SG_ERR_INVALID;
    x = x * 10 + d;
  }
  if (!neg && x > (uint64_t)INT64_MAX) return SG_ERR_INVALID;
  if (neg && x > (uint64_t)INT64_MAX + 1) return SG_ERR_INVALID;
  *out = neg ? (int64_t)(0 - x) : (int64_t)x;
  return 0;
}

int sg_dest_parse_stream_offset(const char *v, sg_stream_offset_t *o) {
  if (strcmp(v, "first") == 0) o->kind = SG_STREAM_FIRST;
  else if (strcmp(v, "last") == 0) o->kind = SG_STREAM_LAST;
  else if (strcmp(v, "next") == 0) o->kind = SG_STREAM_NEXT;
  else if (strncmp(v, "offset=", 7) == 0) {
    o->kind = SG_STREAM_OFFSET;
    if (sg_dest_parse_int(v + 7, &o->value) != 0 || o->value < 0) return SG_ERR_INVALID;
    return 0;
  } else if (strncmp(v, "timestamp=", 10) == 0) {
    o->kind = SG_STREAM_TIMESTAMP;
    if (sg_dest_parse_int(v + 10, &o->value) != 0 || o->value < 0) return SG_ERR_INVALID;
    return 0;
  } else {
    return SG_ERR_INVALID;
  }
  o->value = 0;
  return 0;
}

void sg_dest_durable_queue_name(const char *id, size_t id_len, char *out) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(id, id_len, md, &mdlen, EVP_sha256(), NULL);
  memcpy(out, "stomp-subscription-", 19);
  for (int i = 0; i < 16; i++) {
    out[19 + 2 * i] = hex[md[i] >> 4];
    out[20 + 2 * i] = hex[md[i] & 15];
  }
  out[51] = '\0';
}

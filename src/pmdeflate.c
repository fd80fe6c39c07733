/* SPDX-License-Identifier: MIT */
#include "stompgate/pmdeflate.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "stompgate/err.h"

/* ---------- negotiation ---------- */

/* One offer's parameters as read; the window fields are 0 when absent and
 * -1 when present without a value. */
typedef struct offer {
  int server_nct, client_nct;
  int server_bits, client_bits;
  int bad; /* unknown, repeated or malformed parameter */
} offer_t;

static int is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(const char **p, const char *e) {
  while (*p < e && (**p == ' ' || **p == '\t')) (*p)++;
}

static size_t token(const char **p, const char *e) {
  const char *s = *p;
  while (*p < e && is_tchar(**p)) (*p)++;
  return (size_t)(*p - s);
}

/* A quoted-string's content, unescaped into v (at most cap - 1 bytes kept,
 * *vl set to the full length). 0, or -1 when it is not closed. */
static int quoted(const char **p, const char *e, char *v, size_t cap, size_t *vl) {
  size_t n = 0;
  for ((*p)++; *p < e; (*p)++) {
    char c = **p;
    if (c == '"') {
      (*p)++;
      *vl = n;
      return 0;
    }
    if (c == '\\') {
      if (++*p == e) return -1;
      c = **p;
    }
    if (n + 1 < cap) v[n] = c;
    n++;
  }
  return -1;
}

/* 8..15 written without a leading zero (RFC 7692 section 7.1.2), or -1. */
static int window_bits(const char *v, size_t n) {
  if (n == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
  return -1;
}

static int name_is(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static void param(offer_t *o, const char *name, size_t nl, const char *v, size_t vl, int has_v) {
  int *flag = NULL, *bits = NULL;
  if (name_is(name, nl, "server_no_context_takeover")) flag = &o->server_nct;
  else if (name_is(name, nl, "client_no_context_takeover")) flag = &o->client_nct;
  else if (name_is(name, nl, "server_max_window_bits")) bits = &o->server_bits;
  else if (name_is(name, nl, "client_max_window_bits")) bits = &o->client_bits;
  else {
    o->bad = 1;
    return;
  }
  if (flag) {
    if (*flag || has_v) o->bad = 1;
    *flag = 1;
    return;
  }
  if (*bits) o->bad = 1;
  if (!has_v) {
    /* Only the client's window may be offered without a size. */
    if (bits == &o->server_bits) o->bad = 1;
    *bits = -1;
    return;
  }
  int b = window_bits(v, vl);
  if (b < 0) o->bad = 1;
  *bits = b < 0 ? 15 : b;
}

/* Builds the answer to an acceptable offer; 0 when o cannot be honoured. */
static int answer(const offer_t *o, const sg_pmd_limits_t *lim, sg_pmd_params_t *out) {
  /* Raw deflate turns a window of 8 into 9, which a client that asked for
   * 256 bytes could not follow. */
  if (o->bad || o->server_bits == 8) return 0;
  int s = lim->server_max_window_bits;
  if (o->server_bits > 0 && o->server_bits < s) s = o->server_bits;
  int c = 15;
  if (o->client_bits != 0) {
    c = lim->client_max_window_bits;
    if (o->client_bits > 0 && o->client_bits < c) c = o->client_bits;
  }
  int n = snprintf(out->response, sizeof(out->response), "permessage-deflate; server_no_context_takeover");
  if (o->client_nct)
    n += snprintf(out->response + n, sizeof(out->response) - (size_t)n, "; client_no_context_takeover");
  if (o->server_bits != 0 || s < 15)
    n += snprintf(out->response + n, sizeof(out->response) - (size_t)n, "; server_max_window_bits=%d", s);
  if (o->client_bits != 0)
    snprintf(out->response + n, sizeof(out->response) - (size_t)n, "; client_max_window_bits=%d", c);
  out->server_window_bits = s;
  /* A client told 8 may still send what a 512-byte window allows (zlib
   * does): inflating with a larger window than the sender's is safe. */
  out->client_window_bits = c < 9 ? 9 : c;
  out->client_no_context_takeover = o->client_nct;
  return 1;
}

int sg_pmd_negotiate(const char *offers, size_t len, const sg_pmd_limits_t *lim,
                     sg_pmd_params_t *out) {
  memset(out, 0, sizeof(*out));
  const char *p = offers, *e = offers + len;
  while (p < e) {
    skip_ows(&p, e);
    if (p < e && *p == ',') { /* an empty list element */
      p++;
      continue;
    }
    const char *name = p;
    size_t nl = token(&p, e);
    offer_t o;
    memset(&o, 0, sizeof(o));
    if (nl == 0) o.bad = 1;
    for (;;) {
      skip_ows(&p, e);
      if (p == e || *p == ',' || o.bad) break;
      if (*p != ';') {
        o.bad = 1;
        break;
      }
      p++;
      skip_ows(&p, e);
      const char *pn = p;
      size_t pl = token(&p, e);
      if (pl == 0) {
        o.bad = 1;
        break;
      }
      skip_ows(&p, e);
      char v[16];
      size_t vl = 0;
      int has_v = 0;
      if (p < e && *p == '=') {
        p++;
        skip_ows(&p, e);
        has_v = 1;
        if (p < e && *p == '"') {
          if (quoted(&p, e, v, sizeof(v), &vl) != 0) {
            o.bad = 1;
            break;
          }
          if (vl >= sizeof(v)) vl = 0; /* too long to be a window size */
        } else {
          const char *vs = p;
          size_t n = token(&p, e);
          if (n == 0) {
            o.bad = 1;
            break;
          }
          vl = n < sizeof(v) ? n : 0;
          memcpy(v, vs, vl);
        }
      }
      param(&o, pn, pl, v, vl, has_v);
    }
    if (o.bad) {
      /* Resynchronise at the next comma outside a quoted string. */
      int q = 0;
      while (p < e && (q || *p != ',')) {
        if (*p == '\\' && q && p + 1 < e) p++;
        else if (*p == '"') q = !q;
        p++;
      }
    }
    if (p < e) p++; /* the comma */
    if (name_is(name, nl, "permessage-deflate") && answer(&o, lim, out)) return 1;
  }
  memset(out, 0, sizeof(*out));
  return 0;
}

/* ---------- zlib memory, counted ---------- */

/* zlib's allocations carry their size in front so that the bytes an
 * encoder or inflater holds can be reported exactly. */
typedef union zhead {
  size_t size;
  max_align_t align;
} zhead_t;

static voidpf zcount_alloc(voidpf opaque, uInt items, uInt size) {
  size_t n = (size_t)items * size;
  zhead_t *h = malloc(sizeof(*h) + n);
  if (h == NULL) return NULL;
  h->size = n;
  *(size_t *)opaque += n;
  return h + 1;
}

static void zcount_free(voidpf opaque, voidpf p) {
  if (p == NULL) return;
  zhead_t *h = (zhead_t *)p - 1;
  *(size_t *)opaque -= h->size;
  free(h);
}

/* ---------- encoder ---------- */

/* Frames longer than this are compressed whole and not remembered, which
 * bounds what an encoder holds besides zlib's state. */
#define REMEMBER_MAX (256u << 10)

struct sg_pmd_encoder {
  int level;
  size_t shared_min;
  size_t zmem;           /* bytes zlib holds, through zcount_alloc */
  z_stream zs[16];       /* indexed by window bits; zs_ready says which exist */
  unsigned char zs_ready[16];
  sg_buf_t prev;         /* the last frame compressed whole */
  int prev_bits;
  sg_buf_t tail;         /* a tail the last frames shared ... */
  sg_buf_t ctail;        /* ... compressed, ending in a sync flush */
  int tail_bits;
  sg_pmd_stats_t st;
};

sg_pmd_encoder_t *sg_pmd_encoder_new(int level, size_t shared_min) {
  sg_pmd_encoder_t *e = calloc(1, sizeof(*e));
  if (e == NULL) return NULL;
  e->level = level;
  e->shared_min = shared_min;
  sg_buf_init(&e->prev);
  sg_buf_init(&e->tail);
  sg_buf_init(&e->ctail);
  return e;
}

void sg_pmd_encoder_free(sg_pmd_encoder_t *e) {
  if (e == NULL) return;
  for (int i = 0; i < 16; i++)
    if (e->zs_ready[i]) deflateEnd(&e->zs[i]);
  sg_buf_free(&e->prev);
  sg_buf_free(&e->tail);
  sg_buf_free(&e->ctail);
  free(e);
}

static z_stream *deflater(sg_pmd_encoder_t *e, int bits) {
  if (bits < 9 || bits > 15) return NULL;
  z_stream *zs = &e->zs[bits];
  if (!e->zs_ready[bits]) {
    memset(zs, 0, sizeof(*zs));
    zs->zalloc = zcount_alloc;
    zs->zfree = zcount_free;
    zs->opaque = &e->zmem;
    /* memLevel 8 is zlib's default: 2^(8+9) bytes of hash and buffers. */
    if (deflateInit2(zs, e->level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    e->zs_ready[bits] = 1;
  }
  return zs;
}

/* Compresses in[0..len) from a fresh state and appends it, ending in a sync
 * flush (byte-aligned, 00 00 ff ff last), so that another such part may
 * follow it. */
static int deflate_part(z_stream *zs, const void *in, size_t len, sg_buf_t *out) {
  if (len > UINT_MAX) return SG_ERR_INVALID;
  if (deflateReset(zs) != Z_OK) return SG_ERR_INVALID;
  zs->next_in = (Bytef *)(uintptr_t)in;
  zs->avail_in = (uInt)len;
  size_t want = deflateBound(zs, (uLong)len) + 16;
  for (;;) {
    if (sg_buf_reserve(out, want) != 0) return SG_ERR_NOMEM;
    size_t room = out->cap - out->len - 1;
    if (room > UINT_MAX) room = UINT_MAX;
    zs->next_out = (Bytef *)out->base + out->len;
    zs->avail_out = (uInt)room;
    int r = deflate(zs, Z_SYNC_FLUSH);
    out->len += room - zs->avail_out;
    out->base[out->len] = '\0';
    if (r != Z_OK && r != Z_BUF_ERROR) return SG_ERR_INVALID;
    /* Done when the input is in and zlib had room to spare. */
    if (zs->avail_in == 0 && zs->avail_out > 0) return 0;
    want = 4096;
  }
}

static size_t common_suffix(const char *a, size_t al, const char *b, size_t bl) {
  size_t n = 0;
  while (n < al && n < bl && a[al - 1 - n] == b[bl - 1 - n]) n++;
  return n;
}

static int remember(sg_buf_t *b, const void *p, size_t n) {
  sg_buf_reset(b);
  return sg_buf_append(b, p, n);
}

int sg_pmd_encode(sg_pmd_encoder_t *e, int window_bits, const void *msg, size_t len,
                  sg_buf_t *out) {
  z_stream *zs = deflater(e, window_bits);
  if (zs == NULL) return window_bits < 9 || window_bits > 15 ? SG_ERR_INVALID : SG_ERR_NOMEM;
  const char *m = msg;
  size_t start = out->len, shared = 0;
  int r;
  if (e->shared_min > 0 && len >= e->shared_min && len <= REMEMBER_MAX) {
    if (e->tail.len > 0 && e->tail_bits == window_bits && e->tail.len <= len &&
        memcmp(m + len - e->tail.len, e->tail.base, e->tail.len) == 0) {
      shared = e->tail.len;
    } else if (e->prev.len > 0 && e->prev_bits == window_bits) {
      size_t s = common_suffix(e->prev.base, e->prev.len, m, len);
      if (s >= e->shared_min) {
        sg_buf_reset(&e->ctail);
        if ((r = remember(&e->tail, m + len - s, s)) != 0 ||
            (r = deflate_part(zs, e->tail.base, s, &e->ctail)) != 0) {
          sg_buf_reset(&e->tail);
          return r;
        }
        e->tail_bits = window_bits;
        shared = s;
      }
    }
  }
  if (shared > 0) {
    if (len > shared && (r = deflate_part(zs, m, len - shared, out)) != 0) return r;
    if ((r = sg_buf_append(out, e->ctail.base, e->ctail.len)) != 0) return r;
    e->st.shared++;
  } else {
    if ((r = deflate_part(zs, m, len, out)) != 0) return r;
    if (e->shared_min > 0 && len >= e->shared_min && len <= REMEMBER_MAX) {
      if (remember(&e->prev, m, len) != 0) sg_buf_reset(&e->prev);
      e->prev_bits = window_bits;
    }
  }
  /* RFC 7692 section 7.2.1: the sender drops the sync flush's empty
   * stored block trailer; the receiver puts it back. */
  out->len -= 4;
  out->base[out->len] = '\0';
  e->st.messages++;
  e->st.bytes_in += len;
  e->st.bytes_out += out->len - start;
  return 0;
}

void sg_pmd_encoder_stats(const sg_pmd_encoder_t *e, sg_pmd_stats_t *st) { *st = e->st; }

size_t sg_pmd_encoder_memory(const sg_pmd_encoder_t *e) {
  return sizeof(*e) + e->zmem + e->prev.cap + e->tail.cap + e->ctail.cap;
}

/* ---------- inflater ---------- */

struct sg_pmd_inflater {
  z_stream zs;
  size_t zmem;
};

sg_pmd_inflater_t *sg_pmd_inflater_new(int window_bits) {
  if (window_bits < 9 || window_bits > 15) return NULL;
  sg_pmd_inflater_t *inf = calloc(1, sizeof(*inf));
  if (inf == NULL) return NULL;
  inf->zs.zalloc = zcount_alloc;
  inf->zs.zfree = zcount_free;
  inf->zs.opaque = &inf->zmem;
  if (inflateInit2(&inf->zs, -window_bits) != Z_OK) {
    free(inf);
    return NULL;
  }
  return inf;
}

void sg_pmd_inflater_free(sg_pmd_inflater_t *inf) {
  if (inf == NULL) return;
  inflateEnd(&inf->zs);
  free(inf);
}

size_t sg_pmd_inflater_memory(const sg_pmd_inflater_t *inf) { return sizeof(*inf) + inf->zmem; }

/* Output is made in steps of at most this, so that a message that would
 * pass max stops with out at most this much beyond it. */
#define INFLATE_STEP 16384

int sg_pmd_inflate(sg_pmd_inflater_t *inf, const void *in, size_t len, size_t max, int fresh,
                   sg_buf_t *out) {
  static const unsigned char trailer[4] = {0x00, 0x00, 0xff, 0xff};
  z_stream *zs = &inf->zs;
  if (fresh && inflateReset(zs) != Z_OK) return SG_ERR_INVALID;
  if (len > UINT_MAX) return SG_ERR_FRAME_TOO_LARGE;
  size_t start = out->len;
  for (int part = 0; part < 2; part++) {
    zs->next_in = part == 0 ? (Bytef *)(uintptr_t)in : (Bytef *)(uintptr_t)trailer;
    zs->avail_in = part == 0 ? (uInt)len : sizeof(trailer);
    for (;;) {
      size_t made = out->len - start;
      /* One byte past max is room enough to see that a message is too big. */
      size_t room = max + 1 - made;
      if (room > INFLATE_STEP) room = INFLATE_STEP;
      if (sg_buf_reserve(out, room) != 0) return SG_ERR_NOMEM;
      zs->next_out = (Bytef *)out->base + out->len;
      zs->avail_out = (uInt)room;
      int r = inflate(zs, Z_SYNC_FLUSH);
      out->len += room - zs->avail_out;
      out->base[out->len] = '\0';
      if (out->len - start > max) return SG_ERR_FRAME_TOO_LARGE;
      if (r == Z_STREAM_END) {
        /* A final block ends the stream: what follows it (the trailer) is
         * ignored, and the next message starts afresh. */
        inflateReset(zs);
        return 0;
      }
      if (r == Z_BUF_ERROR && zs->avail_in == 0) break;
      if (r != Z_OK) return SG_ERR_INVALID;
      if (zs->avail_in == 0 && zs->avail_out > 0) break;
    }
  }
  return 0;
}

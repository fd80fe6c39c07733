/* SPDX-License-Identifier: MIT */
/* The STOMP parser on arbitrary bytes in arbitrary pieces, and the encoder
 * on what it parsed. Input layout: byte 0 picks the version and the limits,
 * bytes 1..4 seed the piece sizes, the rest is the stream. Checks:
 *   - the frames (and whether the stream ends in an error) are the same
 *     whether the stream comes in one piece or in random small pieces;
 *   - *consumed never exceeds what was offered and a frame is handed out
 *     only with return 1;
 *   - re-encoding a parsed frame and parsing it again gives the same
 *     command, headers and body (1.0 and CONNECT-type frames have no
 *     escapes, so there a CR in a value comes back as a space, which is
 *     what the encoder documents). */
#include <string.h>

#include "fuzz.h"
#include "stompgate/buf.h"
#include "stompgate/err.h"
#include "stompgate/stomp_codec.h"

#define MAX_FRAMES 64

typedef struct run {
  sg_stomp_frame_t *frames[MAX_FRAMES];
  size_t nframes;
  int err;            /* 0, or the error that ended the stream */
  unsigned long hb;   /* heart-beat EOLs counted */
} run_t;

static uint32_t rng_next(uint32_t *s) {
  /* xorshift32: only needs to be deterministic per input. */
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13, x ^= x >> 17, x ^= x << 5;
  return *s = x;
}

static void run_free(run_t *r) {
  for (size_t i = 0; i < r->nframes; i++) sg_stomp_frame_free(r->frames[i]);
}

/* Feeds data in pieces of at most maxpiece bytes (0: all at once). */
static void feed(const sg_stomp_limits_t *lim, int version, const uint8_t *data, size_t len,
                 uint32_t seed, size_t maxpiece, run_t *out) {
  memset(out, 0, sizeof(*out));
  sg_stomp_parser_t p;
  sg_stomp_parser_init(&p, lim);
  sg_stomp_parser_set_version(&p, version);
  size_t off = 0;
  while (off < len && out->nframes < MAX_FRAMES) {
    size_t piece = len - off;
    if (maxpiece && piece > 1) {
      size_t r = 1 + rng_next(&seed) % maxpiece;
      if (r < piece) piece = r;
    }
    /* An exact-size copy of the piece, so reads past it are caught. */
    char *chunk = malloc(piece);
    FZ_CHECK(chunk != NULL);
    memcpy(chunk, data + off, piece);
    size_t pos = 0;
    while (pos < piece && out->nframes < MAX_FRAMES) {
      size_t consumed = 99999999;
      sg_stomp_frame_t *f = (sg_stomp_frame_t *)1;
      int r = sg_stomp_parser_execute(&p, chunk + pos, piece - pos, &consumed, &f);
      FZ_CHECK(consumed <= piece - pos);
      if (r < 0) {
        FZ_CHECK(f == NULL);
        out->err = r;
        free(chunk);
        goto done;
      }
      if (r == 0) {
        FZ_CHECK(f == NULL && consumed == piece - pos);
        pos = piece;
        break;
      }
      FZ_CHECK(r == 1 && f != NULL);
      FZ_CHECK(consumed > 0);
      out->frames[out->nframes++] = f;
      pos += consumed;
    }
    free(chunk);
    off += piece;
  }
done:
  out->hb = p.heartbeats;
  sg_stomp_parser_free(&p);
}

static int same_frame(const sg_stomp_frame_t *a, const sg_stomp_frame_t *b) {
  if (a->cmd != b->cmd || strcmp(a->command, b->command) != 0) return 0;
  if (a->nheaders != b->nheaders || a->body_len != b->body_len) return 0;
  if (a->has_content_length != b->has_content_length) return 0;
  for (size_t i = 0; i < a->nheaders; i++) {
    const sg_stomp_header_t *x = &a->headers[i], *y = &b->headers[i];
    if (x->name_len != y->name_len || x->value_len != y->value_len) return 0;
    if (memcmp(x->name, y->name, x->name_len) || memcmp(x->value, y->value, x->value_len)) return 0;
  }
  return memcmp(a->body, b->body, a->body_len) == 0;
}

static void check_frame_shape(const sg_stomp_frame_t *f) {
  FZ_CHECK(f->command != NULL && f->body != NULL);
  FZ_CHECK(f->body[f->body_len] == '\0');
  FZ_CHECK(f->cmd == sg_stomp_cmd_from(f->command, strlen(f->command)));
  for (size_t i = 0; i < f->nheaders; i++) {
    FZ_CHECK(f->headers[i].name[f->headers[i].name_len] == '\0');
    FZ_CHECK(f->headers[i].value[f->headers[i].value_len] == '\0');
  }
  if (!f->has_content_length) FZ_CHECK(memchr(f->body, '\0', f->body_len) == NULL);
}

/* What the encoder makes of a value it cannot escape. */
static int lossy_eq(const char *want, size_t wl, const char *got, size_t gl, int raw, int version) {
  if (wl != gl) return 0;
  for (size_t i = 0; i < wl; i++) {
    char w = want[i];
    if (w == '\r' && (raw || version < 12)) w = ' ';
    if (raw && w == '\n') w = ' ';
    if (w != got[i]) return 0;
  }
  return 1;
}

static void round_trip(const sg_stomp_frame_t *f, int version) {
  if (f->cmd == SG_STOMP_UNKNOWN) return;
  int raw = version == 10 || f->cmd == SG_STOMP_CONNECT || f->cmd == SG_STOMP_STOMP ||
            f->cmd == SG_STOMP_CONNECTED;
  sg_buf_t b;
  sg_buf_init(&b);
  FZ_CHECK(sg_stomp_encode_start(&b, f->cmd) == 0);
  size_t kept = 0;
  for (size_t i = 0; i < f->nheaders; i++) {
    const sg_stomp_header_t *h = &f->headers[i];
    /* encode_finish writes the framing content-length itself. */
    if (strcmp(h->name, "content-length") == 0) continue;
    FZ_CHECK(sg_stomp_encode_header(&b, version, f->cmd, h->name, h->name_len, h->value,
                                    h->value_len) == 0);
    kept++;
  }
  FZ_CHECK(sg_stomp_encode_finish(&b, f->body, f->body_len) == 0);

  sg_stomp_limits_t big = {.max_frame_size = b.len + 16, .max_headers = kept + 2,
                           .max_header_size = b.len + 16};
  sg_stomp_parser_t p;
  sg_stomp_parser_init(&p, &big);
  sg_stomp_parser_set_version(&p, version);
  size_t consumed = 0;
  sg_stomp_frame_t *g = NULL;
  int r = sg_stomp_parser_execute(&p, b.base, b.len, &consumed, &g);
  if (r != 1) fprintf(stderr, "re-parse of %zu encoded bytes gave %d\n", b.len, r);
  FZ_CHECK(r == 1 && consumed == b.len);
  FZ_CHECK(g->cmd == f->cmd);
  FZ_CHECK(g->body_len == f->body_len && memcmp(g->body, f->body, f->body_len) == 0);
  size_t j = 0;
  for (size_t i = 0; i < f->nheaders; i++) {
    const sg_stomp_header_t *h = &f->headers[i];
    if (strcmp(h->name, "content-length") == 0) continue;
    FZ_CHECK(j < g->nheaders);
    const sg_stomp_header_t *k = &g->headers[j++];
    if (raw) {
      /* A raw name loses ':' (to '_'); parsing stops the name at the first
       * ':', so a parsed raw name never has one. */
      FZ_CHECK(lossy_eq(h->name, h->name_len, k->name, k->name_len, raw, version));
    } else {
      FZ_CHECK(lossy_eq(h->name, h->name_len, k->name, k->name_len, raw, version));
    }
    FZ_CHECK(lossy_eq(h->value, h->value_len, k->value, k->value_len, raw, version));
  }
  /* Only the content-length encode_finish added may follow. */
  FZ_CHECK(g->nheaders == j + (f->body_len > 0));
  sg_stomp_frame_free(g);
  sg_stomp_parser_free(&p);
  sg_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 5) return 0;
  static const int versions[] = {10, 11, 12, 12};
  int version = versions[data[0] & 3];
  sg_stomp_limits_t lim;
  if (data[0] & 4) {
    /* Tight limits so that every limit path is reached by short inputs. */
    lim.max_frame_size = 16 + (data[0] >> 3) * 8;
    lim.max_headers = 1 + (data[0] >> 5);
    lim.max_header_size = 8 + (data[0] >> 4) * 4;
  } else {
    lim.max_frame_size = 65536;
    lim.max_headers = 64;
    lim.max_header_size = 4096;
  }
  uint32_t seed;
  memcpy(&seed, data + 1, 4);
  const uint8_t *s = data + 5;
  size_t n = size - 5;

  run_t whole, pieces;
  feed(&lim, version, s, n, seed, 0, &whole);
  feed(&lim, version, s, n, seed, 1 + (seed >> 24) % 16, &pieces);

  FZ_CHECK(whole.nframes == pieces.nframes);
  FZ_CHECK((whole.err != 0) == (pieces.err != 0));
  for (size_t i = 0; i < whole.nframes; i++) {
    check_frame_shape(whole.frames[i]);
    FZ_CHECK(same_frame(whole.frames[i], pieces.frames[i]));
    round_trip(whole.frames[i], version);
  }
  run_free(&whole);
  run_free(&pieces);
  return 0;
}

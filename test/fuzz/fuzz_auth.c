/* SPDX-License-Identifier: MIT */
/* The authentication cores on hostile bytes. The first byte picks what the
 * rest is fed to:
 *   0: a token, as received, verified against an HS256 key; then the same
 *      bytes as the claims of a token signed here with that key, which must
 *      never fail on its signature (the signing input is what was signed);
 *   1: a users file (whose users must all be found again by name);
 *   2: a scope, matched against names made of its own bytes;
 *   3: a user name and queue name for user destinations, whose subscribe
 *      and send keys must agree and be two escaped words after "user.". */
#include <openssl/evp.h>
#include <string.h>

#include "fuzz.h"
#include "stompgate/auth.h"
#include "stompgate/buf.h"
#include "stompgate/err.h"
#include "stompgate/user_dest.h"

static const char key[] = "fuzzing-key-fuzzing-key-fuzzing-key!";

static void b64url(const unsigned char *in, size_t n, char *out) {
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = '\0';
  for (char *c = out; *c; c++) *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

static void tokens(sg_jwt_keys_t *k, const char *s, size_t n) {
  sg_jwt_opts_t o = {1700000000, 30, "aud", "sub", "rabbitmq."};
  sg_principal_t p;
  const char *why = NULL;
  int r = sg_jwt_verify(k, s, n, &o, &p, &why);
  FZ_CHECK(r == 0 || (r == SG_ERR_INVALID && why != NULL));
  if (r == 0) {
    FZ_CHECK(p.user && *p.user && strlen(p.user) <= 127);
    sg_principal_free(&p);
  }
  if (n > 4096) return;
  static const char hdr[] = "{\"alg\":\"HS256\"}";
  char *tok = malloc(8 * 1024 + 64);
  b64url((const unsigned char *)hdr, sizeof(hdr) - 1, tok);
  size_t tl = strlen(tok);
  tok[tl++] = '.';
  b64url((const unsigned char *)s, n, tok + tl);
  tl += strlen(tok + tl);
  unsigned char mac[32];
  size_t ml = sizeof(mac);
  EVP_PKEY *hk = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, (const unsigned char *)key,
                                              sizeof(key) - 1);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  FZ_CHECK(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, hk) == 1 &&
           EVP_DigestSign(ctx, mac, &ml, (unsigned char *)tok, tl) == 1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(hk);
  tok[tl++] = '.';
  b64url(mac, ml, tok + tl);
  tl += strlen(tok + tl);
  why = NULL;
  r = sg_jwt_verify(k, tok, tl, &o, &p, &why);
  FZ_CHECK(r == 0 || (r == SG_ERR_INVALID && strcmp(why, "bad token signature") != 0));
  if (r == 0) sg_principal_free(&p);
  free(tok);
}

static void users(const char *s, size_t n) {
  sg_users_t u;
  size_t line = 0;
  const char *why = NULL;
  int r = sg_users_parse(&u, s, n, "rabbitmq.", &line, &why);
  FZ_CHECK(r == 0 || (r == SG_ERR_INVALID && why && line >= 1));
  if (r != 0) return;
  for (size_t i = 0; i < u.n; i++) FZ_CHECK(sg_users_find(&u, u.v[i].name) == &u.v[i]);
  sg_users_free(&u);
}

static void scopes(const char *s, size_t n) {
  sg_scopes_t sc = {NULL, 0};
  int r = sg_scopes_add(&sc, "rabbitmq.", s, n);
  FZ_CHECK(r == 0 || r == 1 || r == SG_ERR_INVALID);
  FZ_CHECK(sc.n == (r == 1 ? 1u : 0u));
  if (r == 1) {
    /* A pattern always matches itself, and "*" matches everything. */
    const sg_scope_t *x = &sc.v[0];
    FZ_CHECK(sg_wildcard_match(x->name, x->name));
    FZ_CHECK(sg_wildcard_match("*", x->name));
    FZ_CHECK(sg_scopes_allow(&sc, x->perm, x->vhost, x->name, x->rk));
  }
  sg_scopes_free(&sc);
}

/* One word of a user key: escaped bytes only. */
static int word_ok(const char *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '-' || c == '%'))
      return 0;
  }
  return 1;
}

static void user_keys(const char *s, size_t n) {
  const char *nul = memchr(s, '\0', n);
  if (nul == NULL) return;
  const char *user = s, *q = nul + 1;
  size_t ql = n - (size_t)(q - s);
  if (memchr(q, '\0', ql) || strlen(user) > 200 || ql > 300) return;
  char dst[400], sdst[1200];
  snprintf(dst, sizeof(dst), "/user/queue/%.*s", (int)ql, q);
  sg_buf_t a, b;
  sg_buf_init(&a);
  sg_buf_init(&b);
  int ra = sg_user_dest_subscribe_key(&a, user, dst);
  /* The same user, percent-encoded, in a SEND destination. */
  size_t w = (size_t)snprintf(sdst, sizeof(sdst), "/user/");
  for (const char *c = user; *c; c++) w += (size_t)snprintf(sdst + w, sizeof(sdst) - w, "%%%02X", (unsigned char)*c);
  snprintf(sdst + w, sizeof(sdst) - w, "/queue/%.*s", (int)ql, q);
  int rb = sg_user_dest_send_key(&b, sdst);
  FZ_CHECK(ra == rb);
  if (ra == 0) {
    FZ_CHECK(a.len == b.len && memcmp(a.base, b.base, a.len) == 0);
    FZ_CHECK(a.len <= 255 && strncmp(a.base, "user.", 5) == 0);
    const char *dot = memchr(a.base + 5, '.', a.len - 5);
    FZ_CHECK(dot != NULL);
    FZ_CHECK(word_ok(a.base + 5, (size_t)(dot - a.base - 5)));
    FZ_CHECK(word_ok(dot + 1, a.len - (size_t)(dot + 1 - a.base)));
  }
  sg_buf_free(&a);
  sg_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sg_jwt_keys_t k;
  if (k.n == 0) FZ_CHECK(sg_jwt_keys_add_secret(&k, key, sizeof(key) - 1, NULL) == 0);
  if (size == 0) return 0;
  const char *s = (const char *)data + 1;
  size_t n = size - 1;
  switch (data[0] % 4) {
  case 0: tokens(&k, s, n); break;
  case 1: users(s, n); break;
  case 2: scopes(s, n); break;
  default: user_keys(s, n); break;
  }
  return 0;
}

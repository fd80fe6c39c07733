/* SPDX-License-Identifier: MIT */
/* JWT verification, RabbitMQ-style scopes, the users file and password
 * hashes. Everything cryptographic goes through OpenSSL; JSON through
 * cJSON. */
#include "stompgate/auth.h"

#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/destination.h"
#include "stompgate/err.h"

/* ---------- scopes ---------- */

void sg_scopes_free(sg_scopes_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->v[i].vhost);
    free(s->v[i].name);
    free(s->v[i].rk);
  }
  free(s->v);
  s->v = NULL;
  s->n = 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A pattern part, percent-decoded as RabbitMQ does (so %2F is '/', which
 * the scope syntax cannot carry otherwise). NULL on a bad escape, an
 * embedded NUL or no memory. */
static char *pattern_dup(const char *p, size_t n) {
  char *o = malloc(n + 1);
  if (o == NULL) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '%') {
      int h, l;
      if (i + 2 >= n || (h = hexval(p[i + 1])) < 0 || (l = hexval(p[i + 2])) < 0) goto bad;
      o[j] = (char)(h * 16 + l);
      if (o[j] == '\0') goto bad;
      j++;
      i += 2;
    } else if (p[i] == '\0') {
      goto bad;
    } else {
      o[j++] = p[i];
    }
  }
  o[j] = '\0';
  return o;
bad:
  free(o);
  return NULL;
}

int sg_scopes_add(sg_scopes_t *s, const char *prefix, const char *scope, size_t len) {
  size_t pl = prefix ? strlen(prefix) : 0;
  if (len < pl || memcmp(scope, prefix, pl) != 0) return 0;
  const char *p = scope + pl, *end = scope + len;
  static const struct {
    const char *word;
    int perm;
  } perms[] = {{"read:", SG_PERM_READ}, {"write:", SG_PERM_WRITE}, {"configure:", SG_PERM_CONFIGURE}};
  int perm = -1;
  for (size_t i = 0; i < 3; i++) {
    size_t wl = strlen(perms[i].word);
    if ((size_t)(end - p) >= wl && memcmp(p, perms[i].word, wl) == 0) {
      perm = perms[i].perm;
      p += wl;
      break;
    }
  }
  /* Other words under the prefix (tags such as "rabbitmq.tag:...") say
   * nothing about resources. */
  if (perm < 0) return memchr(p, ':', (size_t)(end - p)) ? 0 : SG_ERR_INVALID;
  const char *parts[3];
  size_t plen[3], np = 0;
  const char *q = p;
  while (np < 3) {
    const char *slash = memchr(q, '/', (size_t)(end - q));
    parts[np] = q;
    plen[np] = slash ? (size_t)(slash - q) : (size_t)(end - q);
    np++;
    if (slash == NULL) break;
    q = slash + 1;
  }
  if (np < 2 || memchr(q, '/', (size_t)(end - q)) != NULL) return SG_ERR_INVALID;
  if (np == 3 && parts[2] + plen[2] != end) return SG_ERR_INVALID;
  for (size_t i = 0; i < np; i++)
    if (plen[i] == 0) return SG_ERR_INVALID;
  sg_scope_t sc = {perm, NULL, NULL, NULL};
  sc.vhost = pattern_dup(parts[0], plen[0]);
  sc.name = pattern_dup(parts[1], plen[1]);
  if (np == 3) sc.rk = pattern_dup(parts[2], plen[2]);
  if (!sc.vhost || !sc.name || (np == 3 && !sc.rk)) {
    free(sc.vhost);
    free(sc.name);
    free(sc.rk);
    return SG_ERR_INVALID;
  }
  sg_scope_t *nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
  if (nv == NULL) {
    free(sc.vhost);
    free(sc.name);
    free(sc.rk);
    return SG_ERR_NOMEM;
  }
  s->v = nv;
  s->v[s->n++] = sc;
  return 1;
}

int sg_wildcard_match(const char *pat, const char *s) {
  /* Greedy with one backtrack point: linear for the usual patterns, and
   * never exponential. */
  const char *star = NULL, *mark = NULL;
  while (*s) {
    if (*pat == '*') {
      star = pat++;
      mark = s;
    } else if (*pat == *s) {
      pat++;
      s++;
    } else if (star) {
      pat = star + 1;
      s = ++mark;
    } else {
      return 0;
    }
  }
  while (*pat == '*') pat++;
  return *pat == '\0';
}

int sg_scopes_allow(const sg_scopes_t *s, int perm, const char *vhost, const char *name,
                    const char *rk) {
  for (size_t i = 0; i < s->n; i++) {
    const sg_scope_t *sc = &s->v[i];
    if (sc->perm != perm || !sg_wildcard_match(sc->vhost, vhost) ||
        !sg_wildcard_match(sc->name, name))
      continue;
    if (sc->rk && rk && !sg_wildcard_match(sc->rk, rk)) continue;
    return 1;
  }
  return 0;
}

int sg_authz_resource(int kind, const char *name, const char *key, sg_resource_t *r) {
  switch (kind) {
  case SG_DEST_TOPIC:
    *r = (sg_resource_t){"exchange", "amq.topic", name};
    return 1;
  case SG_DEST_EXCHANGE:
    *r = (sg_resource_t){"exchange", name, key ? key : ""};
    return 1;
  case SG_DEST_QUEUE:
  case SG_DEST_AMQ_QUEUE:
  case SG_DEST_REPLY_QUEUE:
    *r = (sg_resource_t){"queue", name, NULL};
    return 1;
  default: /* /temp-queue/: the session's own private queue */
    return 0;
  }
}

void sg_authz_refusal(char *out, size_t cap, int perm, const sg_resource_t *r, const char *vhost,
                      const char *user, const char *command, const char *destination) {
  static const char *const words[] = {"read", "write", "configure"};
  char rk[300] = "";
  if (r->rk) snprintf(rk, sizeof(rk), " with routing key '%.256s'", r->rk);
  snprintf(out, cap, "%s access to %s '%.256s'%s in vhost '%.128s' refused for user '%.128s' (%s %.300s)",
           words[perm], r->type, r->name, rk, vhost, user, command, destination);
}

/* ---------- base64 ---------- */

/* Decodes standard base64 (padding optional) or base64url (no padding):
 * url selects the alphabet. */
static int b64_decode(const char *src, size_t len, int url, unsigned char **out, size_t *outlen) {
  size_t pad = 0;
  if (!url)
    while (len > 0 && src[len - 1] == '=' && pad < 2) len--, pad++;
  if (len % 4 == 1) return SG_ERR_INVALID;
  size_t full = (len + 3) / 4 * 4;
  char *tmp = malloc(full + 1);
  unsigned char *dec = malloc(full / 4 * 3 + 1);
  if (tmp == NULL || dec == NULL) {
    free(tmp);
    free(dec);
    return SG_ERR_NOMEM;
  }
  for (size_t i = 0; i < len; i++) {
    char c = src[i];
    if (url && (c == '+' || c == '/')) goto bad;
    if (url && c == '-') c = '+';
    else if (url && c == '_') c = '/';
    if (!(isalnum((unsigned char)c) || c == '+' || c == '/')) goto bad;
    tmp[i] = c;
  }
  size_t missing = full - len;
  for (size_t i = len; i < full; i++) tmp[i] = '=';
  tmp[full] = '\0';
  int n = full ? EVP_DecodeBlock(dec, (const unsigned char *)tmp, (int)full) : 0;
  if (n < 0 || (size_t)n < missing) goto bad;
  *outlen = (size_t)n - missing;
  dec[*outlen] = '\0';
  free(tmp);
  *out = dec;
  return 0;
bad:
  free(tmp);
  free(dec);
  return SG_ERR_INVALID;
}

int sg_b64url_decode(const char *src, size_t len, unsigned char **out, size_t *outlen) {
  return b64_decode(src, len, 1, out, outlen);
}

/* ---------- keys ---------- */

void sg_jwt_keys_free(sg_jwt_keys_t *k) {
  for (size_t i = 0; i < k->n; i++) {
    free(k->v[i].kid);
    EVP_PKEY_free(k->v[i].pkey);
  }
  free(k->v);
  k->v = NULL;
  k->n = 0;
}

static int keys_push(sg_jwt_keys_t *k, EVP_PKEY *pkey, int alg, const char *kid) {
  sg_jwt_key_t *nv = realloc(k->v, (k->n + 1) * sizeof(*nv));
  if (nv == NULL) return SG_ERR_NOMEM;
  k->v = nv;
  char *kc = NULL;
  if (kid && (kc = strdup(kid)) == NULL) return SG_ERR_NOMEM;
  k->v[k->n++] = (sg_jwt_key_t){kc, alg, pkey};
  return 0;
}

int sg_jwt_keys_add_secret(sg_jwt_keys_t *k, const void *secret, size_t len, const char *kid) {
  if (len == 0 || len > 65536) return SG_ERR_INVALID;
  EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, secret, len);
  if (pk == NULL) return SG_ERR_NOMEM;
  int r = keys_push(k, pk, SG_JWT_HS256, kid);
  if (r) EVP_PKEY_free(pk);
  return r;
}

int sg_jwt_keys_add_pem(sg_jwt_keys_t *k, const char *pem, size_t len, const char *kid,
                        const char **why) {
  if (len > INT32_MAX) {
    *why = "file too large";
    return SG_ERR_INVALID;
  }
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (bio == NULL) return SG_ERR_NOMEM;
  int added = 0, r = 0;
  for (;;) {
    EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (pk == NULL) break;
    int alg = 0;
    if (EVP_PKEY_base_id(pk) == EVP_PKEY_RSA) {
      if (EVP_PKEY_bits(pk) < 2048) {
        *why = "an RSA key has fewer than 2048 bits";
        r = SG_ERR_INVALID;
      }
      alg = SG_JWT_RS256;
    } else if (EVP_PKEY_base_id(pk) == EVP_PKEY_EC) {
      if (EVP_PKEY_bits(pk) != 256) {
        *why = "an EC key is not on P-256 (ES256)";
        r = SG_ERR_INVALID;
      }
      alg = SG_JWT_ES256;
    } else {
      *why = "a key is neither RSA nor EC";
      r = SG_ERR_INVALID;
    }
    if (r == 0) r = keys_push(k, pk, alg, kid);
    if (r != 0) {
      EVP_PKEY_free(pk);
      break;
    }
    added++;
  }
  BIO_free(bio);
  if (r == 0 && added == 0) {
    *why = "no PEM public key (-----BEGIN PUBLIC KEY-----) found";
    r = SG_ERR_INVALID;
  }
  /* The end of the PEM stream leaves an error behind; it means nothing. */
  ERR_clear_error();
  return r ? r : added;
}

/* ---------- JWT ---------- */

void sg_principal_free(sg_principal_t *p) {
  free(p->user);
  p->user = NULL;
  sg_scopes_free(&p->scopes);
}

static int verify_hs256(EVP_PKEY *key, const unsigned char *data, size_t dlen,
                        const unsigned char *sig, size_t slen) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mlen = sizeof(mac);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
           EVP_DigestSign(ctx, mac, &mlen, data, dlen) == 1;
  EVP_MD_CTX_free(ctx);
  return ok && mlen == slen && CRYPTO_memcmp(mac, sig, slen) == 0;
}

static int verify_pkey(EVP_PKEY *key, const unsigned char *data, size_t dlen,
                       const unsigned char *sig, size_t slen) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
           EVP_DigestVerify(ctx, sig, slen, data, dlen) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

/* JWS carries an ES256 signature as R || S, 32 bytes each; OpenSSL wants
 * the DER form of ECDSA-Sig-Value. */
static int verify_es256(EVP_PKEY *key, const unsigned char *data, size_t dlen,
                        const unsigned char *sig, size_t slen) {
  if (slen != 64) return 0;
  ECDSA_SIG *es = ECDSA_SIG_new();
  BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
  int ok = 0;
  if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
    r = s = NULL; /* es owns them */
    unsigned char *der = NULL;
    int dl = i2d_ECDSA_SIG(es, &der);
    if (dl > 0) ok = verify_pkey(key, data, dlen, der, (size_t)dl);
    OPENSSL_free(der);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(es);
  return ok;
}

static int alg_of(const char *name) {
  if (strcmp(name, "HS256") == 0) return SG_JWT_HS256;
  if (strcmp(name, "RS256") == 0) return SG_JWT_RS256;
  if (strcmp(name, "ES256") == 0) return SG_JWT_ES256;
  return 0;
}

/* A NumericDate claim: absent (0), a number (1), or anything else (-1). */
static int numeric_claim(const cJSON *obj, const char *name, int64_t *out) {
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (c == NULL) return 0;
  if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble) || c->valuedouble < 0 ||
      c->valuedouble > 1e15)
    return -1;
  *out = (int64_t)floor(c->valuedouble);
  return 1;
}

static int add_scope_text(sg_principal_t *out, const char *prefix, const char *text) {
  const char *p = text;
  while (*p) {
    while (*p == ' ') p++;
    const char *e = p;
    while (*e && *e != ' ') e++;
    /* A token may carry scopes this gateway cannot read; they grant
     * nothing, and the good ones still count. */
    if (e > p && sg_scopes_add(&out->scopes, prefix, p, (size_t)(e - p)) == SG_ERR_NOMEM)
      return SG_ERR_NOMEM;
    p = e;
  }
  return 0;
}

static int check_claims(const cJSON *pl, const sg_jwt_opts_t *o, sg_principal_t *out,
                        const char **why) {
  if (!cJSON_IsObject(pl)) {
    *why = "malformed token: the payload is not a JSON object";
    return SG_ERR_INVALID;
  }
  int64_t exp = 0, nbf = 0;
  int he = numeric_claim(pl, "exp", &exp), hn = numeric_claim(pl, "nbf", &nbf);
  if (he < 0 || hn < 0) {
    *why = "malformed token: exp or nbf is not a number";
    return SG_ERR_INVALID;
  }
  if (he == 0) {
    *why = "token has no exp claim";
    return SG_ERR_INVALID;
  }
  if (exp + o->leeway <= o->now) {
    *why = "token expired";
    return SG_ERR_INVALID;
  }
  if (hn && nbf > o->now + o->leeway) {
    *why = "token not valid yet (nbf)";
    return SG_ERR_INVALID;
  }
  if (o->audience && *o->audience) {
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(pl, "aud");
    int found = 0;
    if (cJSON_IsString(aud)) {
      found = strcmp(aud->valuestring, o->audience) == 0;
    } else if (cJSON_IsArray(aud)) {
      const cJSON *a;
      cJSON_ArrayForEach(a, aud) if (cJSON_IsString(a) && strcmp(a->valuestring, o->audience) == 0)
          found = 1;
    }
    if (!found) {
      *why = "token audience (aud) does not match";
      return SG_ERR_INVALID;
    }
  }
  const cJSON *u = cJSON_GetObjectItemCaseSensitive(pl, o->user_claim ? o->user_claim : "sub");
  if (!cJSON_IsString(u) || u->valuestring[0] == '\0' || strlen(u->valuestring) > 127) {
    *why = "token has no user name claim (a string of 1 to 127 bytes)";
    return SG_ERR_INVALID;
  }
  for (const char *c = u->valuestring; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) {
      *why = "token user name has control characters";
      return SG_ERR_INVALID;
    }
  if ((out->user = strdup(u->valuestring)) == NULL) return SG_ERR_NOMEM;
  out->exp = exp;
  const cJSON *sc = cJSON_GetObjectItemCaseSensitive(pl, "scope");
  const char *prefix = o->scope_prefix ? o->scope_prefix : "";
  if (cJSON_IsString(sc)) {
    if (add_scope_text(out, prefix, sc->valuestring)) return SG_ERR_NOMEM;
  } else if (cJSON_IsArray(sc)) {
    const cJSON *a;
    cJSON_ArrayForEach(a, sc) if (cJSON_IsString(a) && add_scope_text(out, prefix, a->valuestring))
        return SG_ERR_NOMEM;
  } else if (sc != NULL) {
    *why = "malformed token: scope is neither a string nor an array";
    return SG_ERR_INVALID;
  }
  return 0;
}

int sg_jwt_verify(const sg_jwt_keys_t *keys, const char *token, size_t len,
                  const sg_jwt_opts_t *o, sg_principal_t *out, const char **why) {
  memset(out, 0, sizeof(*out));
  const char *d1 = memchr(token, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
    *why = "malformed token: expected three dot-separated parts";
    return SG_ERR_INVALID;
  }
  unsigned char *hdr = NULL, *pay = NULL, *sig = NULL;
  size_t hl, pl, sl;
  cJSON *hj = NULL, *pj = NULL;
  int r = SG_ERR_INVALID;
  if (sg_b64url_decode(token, (size_t)(d1 - token), &hdr, &hl) != 0 ||
      sg_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pay, &pl) != 0 ||
      sg_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &sig, &sl) != 0) {
    *why = "malformed token: bad base64url";
    goto out;
  }
  if ((hj = cJSON_ParseWithLength((const char *)hdr, hl)) == NULL || !cJSON_IsObject(hj)) {
    *why = "malformed token: the header is not a JSON object";
    goto out;
  }
  const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hj, "alg");
  const cJSON *kid = cJSON_GetObjectItemCaseSensitive(hj, "kid");
  if (!cJSON_IsString(alg)) {
    *why = "malformed token: no alg";
    goto out;
  }
  /* Extensions the issuer marks critical are ones this verifier does not
   * know, so it must refuse them (RFC 7515 section 4.1.11). */
  if (cJSON_GetObjectItemCaseSensitive(hj, "crit")) {
    *why = "token header has crit extensions";
    goto out;
  }
  int a = alg_of(alg->valuestring);
  if (a == 0) {
    *why = "token algorithm not accepted (HS256, RS256 or ES256 only)";
    goto out;
  }
  const char *kids = cJSON_IsString(kid) ? kid->valuestring : NULL;
  int by_kid = 0, have_alg = 0, ok = 0;
  for (size_t i = 0; kids && i < keys->n; i++)
    if (keys->v[i].alg == a && keys->v[i].kid && strcmp(keys->v[i].kid, kids) == 0) by_kid = 1;
  const unsigned char *data = (const unsigned char *)token;
  size_t dlen = (size_t)(d2 - token);
  for (size_t i = 0; i < keys->n && !ok; i++) {
    const sg_jwt_key_t *k = &keys->v[i];
    if (k->alg != a || (by_kid && strcmp(k->kid ? k->kid : "", kids) != 0)) continue;
    have_alg = 1;
    if (a == SG_JWT_HS256) ok = verify_hs256(k->pkey, data, dlen, sig, sl);
    else if (a == SG_JWT_RS256) ok = verify_pkey(k->pkey, data, dlen, sig, sl);
    else ok = verify_es256(k->pkey, data, dlen, sig, sl);
  }
  ERR_clear_error();
  if (!have_alg) {
    *why = "token algorithm not configured (no key for it)";
    goto out;
  }
  if (!ok) {
    *why = "bad token signature";
    goto out;
  }
  if ((pj = cJSON_ParseWithLength((const char *)pay, pl)) == NULL) {
    *why = "malformed token: the payload is not JSON";
    goto out;
  }
  r = check_claims(pj, o, out, why);
  if (r == SG_ERR_NOMEM) *why = "out of memory";
out:
  if (r != 0) sg_principal_free(out);
  cJSON_Delete(hj);
  cJSON_Delete(pj);
  free(hdr);
  free(pay);
  free(sig);
  return r;
}

/* ---------- password hashes ---------- */

static const char hash_tag[] = "pbkdf2-sha256$";

int sg_password_hash(const char *password, size_t plen, unsigned iter, char *out, size_t cap) {
  if (iter < SG_PBKDF2_MIN_ITER || iter > SG_PBKDF2_MAX_ITER || plen > INT32_MAX)
    return SG_ERR_INVALID;
  unsigned char salt[16], dk[32];
  if (RAND_bytes(salt, sizeof(salt)) != 1) return SG_ERR_NOMEM;
  if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, sizeof(salt), (int)iter, EVP_sha256(),
                        sizeof(dk), dk) != 1)
    return SG_ERR_NOMEM;
  char s64[32], h64[48];
  EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
  EVP_EncodeBlock((unsigned char *)h64, dk, sizeof(dk));
  int n = snprintf(out, cap, "%s%u$%s$%s", hash_tag, iter, s64, h64);
  OPENSSL_cleanse(dk, sizeof(dk));
  return n < 0 || (size_t)n >= cap ? SG_ERR_INVALID : 0;
}

/* Splits an encoded hash into its parts; salt and want are new buffers. */
static int hash_parse(const char *enc, unsigned long *iter, unsigned char **salt, size_t *sl,
                      unsigned char **want, size_t *wl) {
  size_t tl = sizeof(hash_tag) - 1;
  *salt = *want = NULL;
  if (strncmp(enc, hash_tag, tl) != 0) return SG_ERR_INVALID;
  const char *p = enc + tl;
  char *end;
  if (*p < '1' || *p > '9') return SG_ERR_INVALID;
  *iter = strtoul(p, &end, 10);
  if (*end != '$' || *iter < SG_PBKDF2_MIN_ITER || *iter > SG_PBKDF2_MAX_ITER)
    return SG_ERR_INVALID;
  const char *s = end + 1, *d = strchr(s, '$');
  if (d == NULL || strchr(d + 1, '$')) return SG_ERR_INVALID;
  if (b64_decode(s, (size_t)(d - s), 0, salt, sl) != 0 ||
      b64_decode(d + 1, strlen(d + 1), 0, want, wl) != 0 || *sl < 8 || *sl > 64 || *wl < 16 ||
      *wl > 64) {
    free(*salt);
    free(*want);
    *salt = *want = NULL;
    return SG_ERR_INVALID;
  }
  return 0;
}

int sg_password_check(const char *enc, const char *password, size_t plen) {
  unsigned long iter;
  unsigned char *salt, *want;
  size_t sl, wl;
  if (plen > INT32_MAX || hash_parse(enc, &iter, &salt, &sl, &want, &wl) != 0)
    return SG_ERR_INVALID;
  unsigned char got[64];
  int r;
  if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)sl, (int)iter, EVP_sha256(), (int)wl,
                        got) != 1)
    r = SG_ERR_NOMEM;
  else
    r = CRYPTO_memcmp(got, want, wl) == 0;
  OPENSSL_cleanse(got, sizeof(got));
  free(salt);
  free(want);
  return r;
}

/* ---------- users file ---------- */

void sg_users_free(sg_users_t *u) {
  for (size_t i = 0; i < u->n; i++) {
    free(u->v[i].name);
    free(u->v[i].hash);
    sg_scopes_free(&u->v[i].scopes);
  }
  free(u->v);
  u->v = NULL;
  u->n = 0;
}

const sg_user_t *sg_users_find(const sg_users_t *u, const char *name) {
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->v[i].name, name) == 0) return &u->v[i];
  return NULL;
}

static const char *next_word(const char *p, const char *end, size_t *wl) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  const char *e = p;
  while (e < end && *e != ' ' && *e != '\t') e++;
  *wl = (size_t)(e - p);
  return p;
}

int sg_users_parse(sg_users_t *out, const char *text, size_t len, const char *prefix,
                   size_t *lineno, const char **why) {
  sg_users_t u = {NULL, 0};
  const char *p = text, *end = text + len;
  size_t line = 0;
  int r = 0;
  while (p < end) {
    line++;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if (le > p && le[-1] == '\r') le--;
    size_t wl;
    const char *w = next_word(p, le, &wl);
    if (wl == 0 || *w == '#') {
      p = nl ? nl + 1 : end;
      continue;
    }
    if (memchr(p, '\0', (size_t)(le - p)) || wl > 127) {
      *why = memchr(p, '\0', (size_t)(le - p)) ? "a NUL byte" : "a user name over 127 bytes";
      r = SG_ERR_INVALID;
      break;
    }
    sg_user_t *nv = realloc(u.v, (u.n + 1) * sizeof(*nv));
    if (nv == NULL) {
      r = SG_ERR_NOMEM;
      break;
    }
    u.v = nv;
    sg_user_t *us = &u.v[u.n];
    memset(us, 0, sizeof(*us));
    us->name = strndup(w, wl);
    if (us->name == NULL) {
      r = SG_ERR_NOMEM;
      break;
    }
    u.n++;
    if (sg_users_find(&(sg_users_t){u.v, u.n - 1}, us->name)) {
      *why = "a user listed twice";
      r = SG_ERR_INVALID;
      break;
    }
    const char *h = next_word(w + wl, le, &wl);
    if (wl == 0 || (us->hash = strndup(h, wl)) == NULL) {
      *why = "no password hash after the user name";
      r = wl ? SG_ERR_NOMEM : SG_ERR_INVALID;
      break;
    }
    /* A malformed hash is a configuration error now rather than a refused
     * login later. */
    unsigned long it;
    unsigned char *hs, *hw;
    size_t hsl, hwl;
    int hp = hash_parse(us->hash, &it, &hs, &hsl, &hw, &hwl);
    free(hs);
    free(hw);
    if (hp != 0) {
      *why = "a password hash not of the form pbkdf2-sha256$ITER$SALT$HASH "
             "(make one with stompgate --hash-password)";
      r = SG_ERR_INVALID;
      break;
    }
    const char *s = h + wl;
    for (;;) {
      s = next_word(s, le, &wl);
      if (wl == 0) break;
      int a = sg_scopes_add(&us->scopes, prefix ? prefix : "", s, wl);
      if (a == SG_ERR_NOMEM) r = a;
      else if (a <= 0) {
        *why = "a scope that is not <prefix>read|write|configure:VHOST/NAME[/KEY]";
        r = SG_ERR_INVALID;
      }
      if (r) break;
      s += wl;
    }
    if (r) break;
    p = nl ? nl + 1 : end;
  }
  if (r) {
    *lineno = line;
    if (r == SG_ERR_NOMEM) *why = "out of memory";
    sg_users_free(&u);
    return r;
  }
  *out = u;
  return 0;
}

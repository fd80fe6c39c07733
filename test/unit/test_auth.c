/* SPDX-License-Identifier: MIT */
/* JWT verification, scopes, users file and password hashes. The keys are
 * made here with OpenSSL at test time; nothing secret is committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/auth.h"
#include "stompgate/destination.h"
#include "stompgate/err.h"

#define NOW 1700000000

static const char secret[] = "0123456789abcdef0123456789abcdef-test-only";

static EVP_PKEY *rsa_a, *rsa_b, *ec_a;

static EVP_PKEY *keygen(int rsa) {
  EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(rsa ? EVP_PKEY_RSA : EVP_PKEY_EC, NULL);
  EVP_PKEY *k = NULL;
  assert_non_null(c);
  assert_int_equal(EVP_PKEY_keygen_init(c), 1);
  if (rsa) assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048), 1);
  else assert_int_equal(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(c, NID_X9_62_prime256v1), 1);
  assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
  EVP_PKEY_CTX_free(c);
  return k;
}

/* The public half as PEM text, as an operator would configure it. */
static char *pub_pem(EVP_PKEY *k) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *out = strndup(p, (size_t)n);
  BIO_free(b);
  return out;
}

static int setup(void **state) {
  (void)state;
  rsa_a = keygen(1);
  rsa_b = keygen(1);
  ec_a = keygen(0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  EVP_PKEY_free(rsa_a);
  EVP_PKEY_free(rsa_b);
  EVP_PKEY_free(ec_a);
  return 0;
}

static void b64url(const unsigned char *in, size_t n, char *out) {
  int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
  while (len > 0 && out[len - 1] == '=') len--;
  out[len] = '\0';
  for (char *c = out; *c; c++) {
    if (*c == '+') *c = '-';
    else if (*c == '/') *c = '_';
  }
}

/* Signs header.payload with alg: "HS256" (secret), "RS256"/"ES256" (k). */
static char *make_token(const char *alg, const char *header_json, const char *payload_json,
                        EVP_PKEY *k) {
  char *out = malloc(16384);
  char h[4096], p[8192];
  b64url((const unsigned char *)header_json, strlen(header_json), h);
  b64url((const unsigned char *)payload_json, strlen(payload_json), p);
  int n = snprintf(out, 16384, "%s.%s", h, p);
  unsigned char sig[1024];
  size_t sl = sizeof(sig);
  EVP_PKEY *hk = NULL;
  if (strcmp(alg, "HS256") == 0) {
    hk = EVP_PKEY_new_raw_private_key(EVP_PKEY_HMAC, NULL, (const unsigned char *)secret,
                                      strlen(secret));
    k = hk;
  }
  if (k != NULL) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (unsigned char *)out, (size_t)n), 1);
    EVP_MD_CTX_free(ctx);
  } else {
    sl = 0;
  }
  if (strcmp(alg, "ES256") == 0) {
    /* DER to the R || S form JWS uses. */
    const unsigned char *d = sig;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)sl);
    assert_non_null(es);
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    memset(sig, 0, 64);
    BN_bn2binpad(r, sig, 32);
    BN_bn2binpad(s, sig + 32, 32);
    sl = 64;
    ECDSA_SIG_free(es);
  }
  EVP_PKEY_free(hk);
  char sb[2048];
  b64url(sig, sl, sb);
  snprintf(out + n, 16384 - (size_t)n, ".%s", sb);
  return out;
}

static sg_jwt_keys_t all_keys(void) {
  sg_jwt_keys_t k = {NULL, 0};
  const char *why = NULL;
  assert_int_equal(sg_jwt_keys_add_secret(&k, secret, strlen(secret), NULL), 0);
  char *pa = pub_pem(rsa_a), *pe = pub_pem(ec_a);
  assert_int_equal(sg_jwt_keys_add_pem(&k, pa, strlen(pa), NULL, &why), 1);
  assert_int_equal(sg_jwt_keys_add_pem(&k, pe, strlen(pe), NULL, &why), 1);
  free(pa);
  free(pe);
  return k;
}

static const sg_jwt_opts_t opts = {NOW, 30, NULL, "sub", "rabbitmq."};

/* Verifies tok with keys; returns the reason on failure, NULL on success. */
static const char *check(const sg_jwt_keys_t *k, const char *tok, const sg_jwt_opts_t *o,
                         sg_principal_t *p) {
  const char *why = NULL;
  sg_principal_t tmp;
  int r = sg_jwt_verify(k, tok, strlen(tok), o, p ? p : &tmp, &why);
  if (r == 0) {
    assert_null(why);
    if (p == NULL) sg_principal_free(&tmp);
    return NULL;
  }
  assert_int_equal(r, SG_ERR_INVALID);
  assert_non_null(why);
  return why;
}

#define PAYLOAD "{\"sub\":\"alice\",\"exp\":1700000100,\"scope\":\"rabbitmq.read:*/amq.topic/a.* other\"}"

static void each_alg_valid_and_tampered(void **state) {
  (void)state;
  sg_jwt_keys_t k = all_keys();
  struct {
    const char *alg;
    EVP_PKEY *key;
  } cases[] = {{"HS256", NULL}, {"RS256", rsa_a}, {"ES256", ec_a}};
  for (size_t i = 0; i < 3; i++) {
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", cases[i].alg);
    char *t = make_token(cases[i].alg, hdr, PAYLOAD, cases[i].key);
    sg_principal_t p;
    assert_null(check(&k, t, &opts, &p));
    assert_string_equal(p.user, "alice");
    assert_int_equal(p.exp, 1700000100);
    assert_int_equal(p.scopes.n, 1);
    assert_true(sg_scopes_allow(&p.scopes, SG_PERM_READ, "/", "amq.topic", "a.b"));
    assert_false(sg_scopes_allow(&p.scopes, SG_PERM_WRITE, "/", "amq.topic", "a.b"));
    sg_principal_free(&p);
    /* A changed payload no longer matches the signature. */
    char *t2 = make_token(cases[i].alg, hdr, PAYLOAD, cases[i].key);
    char *dot = strchr(t2, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_string_equal(check(&k, t2, &opts, NULL), "bad token signature");
    /* And a flipped signature byte fails too. */
    char *t3 = make_token(cases[i].alg, hdr, PAYLOAD, cases[i].key);
    size_t l = strlen(t3);
    t3[l - 2] = t3[l - 2] == 'A' ? 'B' : 'A';
    assert_non_null(check(&k, t3, &opts, NULL));
    free(t);
    free(t2);
    free(t3);
  }
  /* Signed by a key that is not configured. */
  char *t = make_token("RS256", "{\"alg\":\"RS256\"}", PAYLOAD, rsa_b);
  assert_string_equal(check(&k, t, &opts, NULL), "bad token signature");
  free(t);
  /* An ES256 signature of the wrong length. */
  t = make_token("ES256", "{\"alg\":\"ES256\"}", PAYLOAD, ec_a);
  char *cut = strrchr(t, '.');
  cut[9] = 0; /* 8 characters: 6 bytes */
  assert_string_equal(check(&k, t, &opts, NULL), "bad token signature");
  free(t);
  sg_jwt_keys_free(&k);
}

static void algorithms_refused(void **state) {
  (void)state;
  sg_jwt_keys_t k = all_keys();
  char *t = make_token("none", "{\"alg\":\"none\"}", PAYLOAD, NULL);
  assert_string_equal(check(&k, t, &opts, NULL),
                      "token algorithm not accepted (HS256, RS256 or ES256 only)");
  free(t);
  t = make_token("HS512", "{\"alg\":\"HS512\"}", PAYLOAD, NULL);
  assert_non_null(check(&k, t, &opts, NULL));
  free(t);
  t = make_token("RS256", "{\"alg\":\"RS256\",\"crit\":[\"x\"]}", PAYLOAD, rsa_a);
  assert_string_equal(check(&k, t, &opts, NULL), "token header has crit extensions");
  free(t);
  sg_jwt_keys_free(&k);

  /* Only an RSA key configured: an HS256 token (e.g. MACed with the public
   * key's text, the classic confusion) finds no key for its algorithm. */
  sg_jwt_keys_t rk = {NULL, 0};
  const char *why;
  char *pa = pub_pem(rsa_a);
  assert_int_equal(sg_jwt_keys_add_pem(&rk, pa, strlen(pa), NULL, &why), 1);
  t = make_token("HS256", "{\"alg\":\"HS256\"}", PAYLOAD, NULL);
  assert_string_equal(check(&rk, t, &opts, NULL), "token algorithm not configured (no key for it)");
  free(t);
  t = make_token("ES256", "{\"alg\":\"ES256\"}", PAYLOAD, ec_a);
  assert_string_equal(check(&rk, t, &opts, NULL), "token algorithm not configured (no key for it)");
  free(t);
  free(pa);
  sg_jwt_keys_free(&rk);
}

static void time_claims(void **state) {
  (void)state;
  sg_jwt_keys_t k = all_keys();
  struct {
    const char *payload;
    const char *why; /* NULL: accepted */
  } cases[] = {
      {"{\"sub\":\"a\",\"exp\":1699999000}", "token expired"},
      {"{\"sub\":\"a\",\"exp\":1699999980}", NULL}, /* within the 30 s leeway */
      {"{\"sub\":\"a\",\"exp\":1699999970}", "token expired"},
      {"{\"sub\":\"a\"}", "token has no exp claim"},
      {"{\"sub\":\"a\",\"exp\":\"soon\"}", "malformed token: exp or nbf is not a number"},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000100}", "token not valid yet (nbf)"},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1700000020}", NULL},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"nbf\":1699990000}", NULL},
      {"{\"exp\":1700000100}", "token has no user name claim (a string of 1 to 127 bytes)"},
      {"{\"sub\":\"\",\"exp\":1700000100}", "token has no user name claim (a string of 1 to 127 bytes)"},
      {"{\"sub\":7,\"exp\":1700000100}", "token has no user name claim (a string of 1 to 127 bytes)"},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"scope\":7}",
       "malformed token: scope is neither a string nor an array"},
      {"[1,2]", "malformed token: the payload is not a JSON object"},
      {"{\"sub\":\"a\",", "malformed token: the payload is not JSON"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *t = make_token("HS256", "{\"alg\":\"HS256\"}", cases[i].payload, NULL);
    const char *why = check(&k, t, &opts, NULL);
    if (cases[i].why == NULL) assert_null(why);
    else assert_string_equal(why, cases[i].why);
    free(t);
  }
  sg_jwt_keys_free(&k);
}

static void audience(void **state) {
  (void)state;
  sg_jwt_keys_t k = all_keys();
  sg_jwt_opts_t o = opts;
  o.audience = "stompgate";
  struct {
    const char *payload;
    int ok;
  } cases[] = {
      {"{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"stompgate\"}", 1},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"aud\":[\"x\",\"stompgate\"]}", 1},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"aud\":\"other\"}", 0},
      {"{\"sub\":\"a\",\"exp\":1700000100,\"aud\":[\"x\"]}", 0},
      {"{\"sub\":\"a\",\"exp\":1700000100}", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char *t = make_token("HS256", "{\"alg\":\"HS256\"}", cases[i].payload, NULL);
    const char *why = check(&k, t, &o, NULL);
    if (cases[i].ok) assert_null(why);
    else assert_string_equal(why, "token audience (aud) does not match");
    /* Without an audience configured, aud is not looked at. */
    assert_null(check(&k, t, &opts, NULL));
    free(t);
  }
  sg_jwt_keys_free(&k);
}

static void malformed(void **state) {
  (void)state;
  sg_jwt_keys_t k = all_keys();
  const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "e30.e30.", "!!!.e30.AAAA",
                       "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA", "e30.e30.A"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_non_null(check(&k, bad[i], &opts, NULL));
  /* A header that is not JSON, or has no alg. */
  char *t = make_token("HS256", "{\"alg\":", PAYLOAD, NULL);
  assert_string_equal(check(&k, t, &opts, NULL), "malformed token: the header is not a JSON object");
  free(t);
  t = make_token("HS256", "{\"typ\":\"JWT\"}", PAYLOAD, NULL);
  assert_string_equal(check(&k, t, &opts, NULL), "malformed token: no alg");
  free(t);
  sg_jwt_keys_free(&k);

  unsigned char *out;
  size_t n;
  assert_int_equal(sg_b64url_decode("aGk", 3, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_memory_equal(out, "hi", 2);
  free(out);
  assert_int_equal(sg_b64url_decode("-_8", 3, &out, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(out[0], 0xfb);
  assert_int_equal(out[1], 0xff);
  free(out);
  assert_int_equal(sg_b64url_decode("a+8", 3, &out, &n), SG_ERR_INVALID);
  assert_int_equal(sg_b64url_decode("aGk=", 4, &out, &n), SG_ERR_INVALID);
  assert_int_equal(sg_b64url_decode("a", 1, &out, &n), SG_ERR_INVALID);
}

static void key_ids(void **state) {
  (void)state;
  sg_jwt_keys_t k = {NULL, 0};
  const char *why;
  char *pa = pub_pem(rsa_a), *pb = pub_pem(rsa_b);
  /* One file with both keys, the way a JWKS export often looks. */
  char both[8192];
  snprintf(both, sizeof(both), "%s%s", pa, pb);
  assert_int_equal(sg_jwt_keys_add_pem(&k, both, strlen(both), NULL, &why), 2);
  char *t = make_token("RS256", "{\"alg\":\"RS256\"}", PAYLOAD, rsa_b);
  assert_null(check(&k, t, &opts, NULL)); /* no kid: each key in turn */
  free(t);
  sg_jwt_keys_free(&k);

  assert_int_equal(sg_jwt_keys_add_pem(&k, pa, strlen(pa), "ka", &why), 1);
  assert_int_equal(sg_jwt_keys_add_pem(&k, pb, strlen(pb), "kb", &why), 1);
  t = make_token("RS256", "{\"alg\":\"RS256\",\"kid\":\"kb\"}", PAYLOAD, rsa_b);
  assert_null(check(&k, t, &opts, NULL));
  free(t);
  /* kid names key a but b signed: only key a is tried. */
  t = make_token("RS256", "{\"alg\":\"RS256\",\"kid\":\"ka\"}", PAYLOAD, rsa_b);
  assert_string_equal(check(&k, t, &opts, NULL), "bad token signature");
  free(t);
  sg_jwt_keys_free(&k);

  assert_int_equal(sg_jwt_keys_add_pem(&k, "junk", 4, NULL, &why), SG_ERR_INVALID);
  assert_non_null(strstr(why, "no PEM public key"));
  free(pa);
  free(pb);
  sg_jwt_keys_free(&k);
  assert_int_equal(sg_jwt_keys_add_secret(&k, "", 0, NULL), SG_ERR_INVALID);
}

static void wildcards(void **state) {
  (void)state;
  struct {
    const char *pat, *s;
    int m;
  } t[] = {
      {"*", "", 1},          {"*", "anything", 1},   {"a*", "a", 1},
      {"a*", "abc", 1},      {"a*", "ba", 0},        {"*c", "abc", 1},
      {"a*c", "abbbc", 1},   {"a*c", "abcd", 0},     {"a.*.c", "a.b.c", 1},
      {"a.*.c", "a.c", 0},   {"abc", "abc", 1},      {"abc", "abcd", 0},
      {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", 0},
      {"**", "x", 1},        {"", "", 1},            {"", "x", 0},
      {"user.alice.*", "user.alice.inbox", 1}, {"user.alice.*", "user.alicex.inbox", 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    assert_int_equal(sg_wildcard_match(t[i].pat, t[i].s), t[i].m);
}

static void scope_table(void **state) {
  (void)state;
  sg_scopes_t s = {NULL, 0};
  const char *p = "rabbitmq.";
#define ADD(text, want) assert_int_equal(sg_scopes_add(&s, p, text, strlen(text)), want)
  ADD("rabbitmq.read:*/amq.topic/prices.*", 1);
  ADD("rabbitmq.write:%2F/amq.topic/chat.*", 1);
  ADD("rabbitmq.read:prod/orders", 1);
  ADD("rabbitmq.write:*/jobs-*", 1);
  ADD("rabbitmq.configure:*/stomp-subscription-*", 1);
  ADD("other.read:*/*", 0);          /* another resource server's scope */
  ADD("rabbitmq.tag:administrator", 0);
  ADD("rabbitmq.read:*", SG_ERR_INVALID);
  ADD("rabbitmq.read:*/", SG_ERR_INVALID);
  ADD("rabbitmq.read:*/a/b/c", SG_ERR_INVALID);
  ADD("rabbitmq.read:*/a%2", SG_ERR_INVALID);
  ADD("rabbitmq.delete:*/a", 0); /* a word it does not know grants nothing */
#undef ADD
  struct {
    int perm;
    const char *vhost, *name, *rk;
    int allow;
  } t[] = {
      {SG_PERM_READ, "/", "amq.topic", "prices.eur", 1},
      {SG_PERM_READ, "other", "amq.topic", "prices.eur", 1},
      {SG_PERM_READ, "/", "amq.topic", "orders.new", 0},
      {SG_PERM_WRITE, "/", "amq.topic", "prices.eur", 0},
      {SG_PERM_WRITE, "/", "amq.topic", "chat.lobby", 1},
      {SG_PERM_WRITE, "other", "amq.topic", "chat.lobby", 0}, /* %2F is "/" only */
      {SG_PERM_READ, "prod", "orders", NULL, 1},
      {SG_PERM_READ, "prod", "orders", "any.key", 1},         /* no key pattern: any key */
      {SG_PERM_READ, "/", "orders", NULL, 0},
      {SG_PERM_WRITE, "x", "jobs-1", NULL, 1},
      {SG_PERM_WRITE, "x", "job", NULL, 0},
      {SG_PERM_READ, "x", "jobs-1", NULL, 0},
      {SG_PERM_CONFIGURE, "/", "stomp-subscription-abc", NULL, 1},
      {SG_PERM_CONFIGURE, "/", "amq.topic", NULL, 0},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
    assert_int_equal(sg_scopes_allow(&s, t[i].perm, t[i].vhost, t[i].name, t[i].rk), t[i].allow);
  sg_scopes_free(&s);

  /* Scopes as a JSON array, and prefixes other than the default. */
  sg_jwt_keys_t k = all_keys();
  char *tok = make_token("HS256", "{\"alg\":\"HS256\"}",
                         "{\"sub\":\"b\",\"exp\":1700000100,\"scope\":[\"gw.write:*/q1\","
                         "\"gw.read:*/amq.topic/x\",\"rabbitmq.read:*/*\",\"gw.read:broken\"]}",
                         NULL);
  sg_jwt_opts_t o = opts;
  o.scope_prefix = "gw.";
  sg_principal_t pr;
  assert_null(check(&k, tok, &o, &pr));
  assert_int_equal(pr.scopes.n, 2);
  assert_true(sg_scopes_allow(&pr.scopes, SG_PERM_WRITE, "/", "q1", NULL));
  assert_false(sg_scopes_allow(&pr.scopes, SG_PERM_READ, "/", "q1", NULL));
  sg_principal_free(&pr);
  free(tok);
  sg_jwt_keys_free(&k);
}

static void destinations(void **state) {
  (void)state;
  sg_resource_t r;
  assert_int_equal(sg_authz_resource(SG_DEST_TOPIC, "a.b", "", &r), 1);
  assert_string_equal(r.type, "exchange");
  assert_string_equal(r.name, "amq.topic");
  assert_string_equal(r.rk, "a.b");
  assert_int_equal(sg_authz_resource(SG_DEST_EXCHANGE, "ex", "k", &r), 1);
  assert_string_equal(r.name, "ex");
  assert_string_equal(r.rk, "k");
  assert_int_equal(sg_authz_resource(SG_DEST_QUEUE, "q", "", &r), 1);
  assert_string_equal(r.type, "queue");
  assert_null(r.rk);
  assert_int_equal(sg_authz_resource(SG_DEST_AMQ_QUEUE, "q", "", &r), 1);
  assert_int_equal(sg_authz_resource(SG_DEST_REPLY_QUEUE, "amq.gen-x", "", &r), 1);
  assert_int_equal(sg_authz_resource(SG_DEST_TEMP_QUEUE, "t", "", &r), 0);
  char out[512];
  sg_authz_resource(SG_DEST_TOPIC, "a.b", "", &r);
  sg_authz_refusal(out, sizeof(out), SG_PERM_READ, &r, "/", "alice", "SUBSCRIBE", "/topic/a.b");
  assert_string_equal(out, "read access to exchange 'amq.topic' with routing key 'a.b' in vhost "
                           "'/' refused for user 'alice' (SUBSCRIBE /topic/a.b)");
  sg_authz_resource(SG_DEST_QUEUE, "q", "", &r);
  sg_authz_refusal(out, sizeof(out), SG_PERM_WRITE, &r, "v", "bob", "SEND", "/queue/q");
  assert_string_equal(out, "write access to queue 'q' in vhost 'v' refused for user 'bob' "
                           "(SEND /queue/q)");
}

static void passwords(void **state) {
  (void)state;
  char h[256];
  assert_int_equal(sg_password_hash("s3cret", 6, SG_PBKDF2_MIN_ITER, h, sizeof(h)), 0);
  assert_int_equal(strncmp(h, "pbkdf2-sha256$1000$", 19), 0);
  assert_int_equal(sg_password_check(h, "s3cret", 6), 1);
  assert_int_equal(sg_password_check(h, "s3cre", 5), 0);
  assert_int_equal(sg_password_check(h, "s3cret!", 7), 0);
  char h2[256];
  assert_int_equal(sg_password_hash("s3cret", 6, SG_PBKDF2_MIN_ITER, h2, sizeof(h2)), 0);
  assert_string_not_equal(h, h2); /* a fresh salt each time */
  assert_int_equal(sg_password_hash("x", 1, 10, h2, sizeof(h2)), SG_ERR_INVALID);
  assert_int_equal(sg_password_hash("x", 1, 1000, h2, 20), SG_ERR_INVALID);
  /* A known vector: PBKDF2-HMAC-SHA256("password", "saltsalt", 1000, 32),
   * as Python's hashlib.pbkdf2_hmac computes it. */
  const char *known = "pbkdf2-sha256$1000$c2FsdHNhbHQ=$"
                      "E196ZhRPzw+wA84EjzHwJO1cv/MFJdO6C/sxmUeTYqY=";
  assert_int_equal(sg_password_check(known, "password", 8), 1);
  assert_int_equal(sg_password_check(known, "Password", 8), 0);
  const char *bad[] = {"", "md5$x", "pbkdf2-sha256$999$c2FsdHNhbHQ=$6oLfc/uyvQdMBJ3w5p2wGQ==",
                       "pbkdf2-sha256$1000$c2FsdHNhbHQ=", "pbkdf2-sha256$1000$!!$AAAA",
                       "pbkdf2-sha256$1000$c2FsdHNhbHQ=$AAAA",
                       "pbkdf2-sha256$01000$c2FsdHNhbHQ=$6oLfc/uyvQdMBJ3w5p2wGQ==",
                       "pbkdf2-sha256$1000$c2FsdHNhbHQ=$6oLfc/uyvQdMBJ3w5p2wGQ==$x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(sg_password_check(bad[i], "password", 8), SG_ERR_INVALID);
}

static void users_file(void **state) {
  (void)state;
  const char *hash = "pbkdf2-sha256$1000$c2FsdHNhbHQ=$E196ZhRPzw+wA84EjzHwJO1cv/MFJdO6C/sxmUeTYqY=";
  char text[2048];
  snprintf(text, sizeof(text),
           "# users\n\nalice %s rabbitmq.read:*/amq.topic/chat.* rabbitmq.write:*/amq.topic/chat.*\r\n"
           "  bob\t%s\n"
           "carol %s rabbitmq.read:*/q",
           hash, hash, hash);
  sg_users_t u;
  size_t line = 0;
  const char *why = NULL;
  assert_int_equal(sg_users_parse(&u, text, strlen(text), "rabbitmq.", &line, &why), 0);
  assert_int_equal(u.n, 3);
  const sg_user_t *a = sg_users_find(&u, "alice");
  assert_non_null(a);
  assert_int_equal(a->scopes.n, 2);
  assert_true(sg_scopes_allow(&a->scopes, SG_PERM_WRITE, "/", "amq.topic", "chat.x"));
  assert_int_equal(sg_users_find(&u, "bob")->scopes.n, 0);
  assert_int_equal(sg_users_find(&u, "carol")->scopes.n, 1);
  assert_null(sg_users_find(&u, "dave"));
  assert_int_equal(sg_password_check(a->hash, "password", 8), 1);
  sg_users_free(&u);

  struct {
    const char *fmt;
    size_t line;
  } bad[] = {
      {"alice %s\nalice %s\n", 2},
      {"alice\n", 1},
      {"# ok\nalice md5$abc\n", 2},
      {"alice %s rabbitmq.read:nopattern\n", 1},
      {"alice %s other.read:*/*\n", 1},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(text, sizeof(text), bad[i].fmt, hash, hash);
    line = 0;
    why = NULL;
    assert_int_equal(sg_users_parse(&u, text, strlen(text), "rabbitmq.", &line, &why),
                     SG_ERR_INVALID);
    assert_int_equal(line, bad[i].line);
    assert_non_null(why);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(each_alg_valid_and_tampered),
      cmocka_unit_test(algorithms_refused),
      cmocka_unit_test(time_claims),
      cmocka_unit_test(audience),
      cmocka_unit_test(malformed),
      cmocka_unit_test(key_ids),
      cmocka_unit_test(wildcards),
      cmocka_unit_test(scope_table),
      cmocka_unit_test(destinations),
      cmocka_unit_test(passwords),
      cmocka_unit_test(users_file),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

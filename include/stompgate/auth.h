/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_AUTH_H
#define STOMPGATE_AUTH_H

/* The gateway's own authentication and authorisation in shared relay mode:
 * JSON Web Token verification (HS256, RS256, ES256 with OpenSSL), scopes in
 * RabbitMQ's OAuth 2 form, the users file and its PBKDF2 password hashes.
 * No I/O: keys, files and tokens come in as bytes, the clock as a value. */

#include <stddef.h>
#include <stdint.h>

/* ---------- scopes ---------- */

enum sg_perm { SG_PERM_READ = 0, SG_PERM_WRITE, SG_PERM_CONFIGURE };

/* One scope "<prefix><perm>:<vhost>/<name>[/<routing key>]", its patterns
 * percent-decoded; rk is NULL when the scope names none (any key). */
typedef struct sg_scope {
  int perm;
  char *vhost, *name, *rk;
} sg_scope_t;

typedef struct sg_scopes {
  sg_scope_t *v;
  size_t n;
} sg_scopes_t;

void sg_scopes_free(sg_scopes_t *s);

/* Parses scope[0..len) and adds it to s. Returns 1 when added, 0 when the
 * text does not start with prefix (another application's scope: ignored),
 * SG_ERR_INVALID when it starts with prefix but is malformed, SG_ERR_NOMEM. */
int sg_scopes_add(sg_scopes_t *s, const char *prefix, const char *scope, size_t len);

/* RabbitMQ's wildcard match: '*' in pat stands for any run of characters
 * (none included); every other character matches itself. 1 or 0. */
int sg_wildcard_match(const char *pat, const char *subject);

/* Whether s grants perm on resource name in vhost. rk is the routing key
 * for topic-style access, or NULL for a queue; a scope with a routing key
 * pattern only grants access with a key that matches it. 1 or 0. */
int sg_scopes_allow(const sg_scopes_t *s, int perm, const char *vhost, const char *name,
                    const char *rk);

/* What a STOMP destination needs, in RabbitMQ's terms: perm on a queue
 * (rk NULL) or on an exchange with a routing key. kind is an
 * sg_dest_kind_t; name and key are as sg_dest_parse gives them (an
 * application destination is an SG_DEST_EXCHANGE on the application
 * exchange with its routing key). */
typedef struct sg_resource {
  const char *type; /* "queue" or "exchange" */
  const char *name;
  const char *rk;   /* routing key for an exchange, NULL for a queue */
} sg_resource_t;

/* Fills r (borrowing name and key) for a SEND (SG_PERM_WRITE) or SUBSCRIBE
 * (SG_PERM_READ) of that destination. Returns 1 when the scopes must be
 * checked, 0 when the destination needs no permission (/temp-queue/). */
int sg_authz_resource(int kind, const char *name, const char *key, sg_resource_t *r);

/* Writes the body of the ERROR for a refused access into out[0..cap):
 * "<perm> access to <type> '<name>'[ with routing key '<rk>'] in vhost
 * '<vhost>' refused for user '<user>' (<command> <destination>)". */
void sg_authz_refusal(char *out, size_t cap, int perm, const sg_resource_t *r, const char *vhost,
                      const char *user, const char *command, const char *destination);

/* ---------- JSON Web Tokens ---------- */

enum sg_jwt_alg { SG_JWT_HS256 = 1, SG_JWT_RS256 = 2, SG_JWT_ES256 = 4 };

typedef struct sg_jwt_key {
  char *kid;          /* NULL: tried for any token of its algorithm */
  int alg;            /* the one algorithm this key verifies */
  void *pkey;         /* EVP_PKEY *, owned */
} sg_jwt_key_t;

typedef struct sg_jwt_keys {
  sg_jwt_key_t *v;
  size_t n;
} sg_jwt_keys_t;

void sg_jwt_keys_free(sg_jwt_keys_t *k);

/* Adds an HS256 secret (copied). 0, SG_ERR_INVALID (empty), SG_ERR_NOMEM. */
int sg_jwt_keys_add_secret(sg_jwt_keys_t *k, const void *secret, size_t len, const char *kid);

/* Adds every public key in the PEM text pem[0..len) (PUBLIC KEY blocks;
 * RSA of at least 2048 bits for RS256, EC P-256 for ES256), each under kid
 * (copied; NULL for none). Returns the number of keys added (> 0) or
 * SG_ERR_INVALID with a static reason in *why. */
int sg_jwt_keys_add_pem(sg_jwt_keys_t *k, const char *pem, size_t len, const char *kid,
                        const char **why);

typedef struct sg_jwt_opts {
  int64_t now;              /* seconds since the epoch */
  int64_t leeway;           /* seconds of clock skew allowed for exp and nbf */
  const char *audience;     /* NULL: aud is not checked */
  const char *user_claim;   /* claim naming the user, e.g. "sub" */
  const char *scope_prefix; /* e.g. "rabbitmq." */
} sg_jwt_opts_t;

/* What a verified token says. Owned; free with sg_principal_free. */
typedef struct sg_principal {
  char *user;
  int64_t exp;       /* seconds since the epoch; 0 for no expiry (users file) */
  sg_scopes_t scopes;
} sg_principal_t;

void sg_principal_free(sg_principal_t *p);

/* Verifies the compact JWS token[0..len) against keys: the alg must be
 * HS256, RS256 or ES256 with a key configured for it (the one named by
 * kid when a key has that kid, else each in turn); exp is required and
 * must be later than now - leeway; nbf, when present, no later than
 * now + leeway; with an audience, aud (a string or an array) must hold
 * it; the user claim must be a non-empty string of at most 127 bytes.
 * Returns 0 and fills out, or SG_ERR_INVALID with a static reason in *why
 * ("bad signature", "token expired", ...), or SG_ERR_NOMEM. */
int sg_jwt_verify(const sg_jwt_keys_t *keys, const char *token, size_t len,
                  const sg_jwt_opts_t *opts, sg_principal_t *out, const char **why);

/* base64url without padding, as JWTs use it. Decodes src[0..len) into a
 * new buffer *out (NUL-terminated, caller frees) of *outlen bytes.
 * 0 or SG_ERR_INVALID (bad character or length), SG_ERR_NOMEM. */
int sg_b64url_decode(const char *src, size_t len, unsigned char **out, size_t *outlen);

/* ---------- users file and password hashes ---------- */

/* Iterations --hash-password uses (PBKDF2-HMAC-SHA256). */
#define SG_PBKDF2_DEFAULT_ITER 600000
#define SG_PBKDF2_MIN_ITER 1000
#define SG_PBKDF2_MAX_ITER 100000000

/* Makes "pbkdf2-sha256$<iter>$<salt_b64>$<hash_b64>" for password with 16
 * random bytes of salt: into out[0..cap). 0, SG_ERR_INVALID (cap too small,
 * iter out of range) or SG_ERR_NOMEM (no randomness). */
int sg_password_hash(const char *password, size_t plen, unsigned iter, char *out, size_t cap);

/* Whether password matches the encoded hash (constant-time comparison).
 * 1 match, 0 no match, SG_ERR_INVALID for a malformed hash. */
int sg_password_check(const char *encoded, const char *password, size_t plen);

typedef struct sg_user {
  char *name;
  char *hash;
  sg_scopes_t scopes;
} sg_user_t;

typedef struct sg_users {
  sg_user_t *v;
  size_t n;
} sg_users_t;

void sg_users_free(sg_users_t *u);

/* Parses a users file text[0..len): one user per line,
 * "name pbkdf2-sha256$... scope scope ...", blank lines and lines starting
 * with '#' ignored. Every scope must carry prefix. Returns 0, or
 * SG_ERR_INVALID with the 1-based line in *line and a static reason in
 * *why, or SG_ERR_NOMEM. u is filled only on success. */
int sg_users_parse(sg_users_t *u, const char *text, size_t len, const char *prefix, size_t *line,
                   const char **why);

const sg_user_t *sg_users_find(const sg_users_t *u, const char *name);

#endif

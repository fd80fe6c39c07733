/* SPDX-License-Identifier: MIT */
/* Gateway-side authentication and authorisation for --auth jwt and
 * --auth file; the verification itself is in auth.c. */
#include "access.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "stompgate/auth.h"
#include "stompgate/err.h"

/* Files a key, secret or users file may come from: anything larger is not
 * one of them. */
#define MAX_FILE_BYTES (4u << 20)

static const sg_config_t *acfg;
static sg_jwt_keys_t keys; /* read-only once loaded */
static sg_users_t users;   /* replaced on SIGHUP under users_lock */
static pthread_rwlock_t users_lock = PTHREAD_RWLOCK_INITIALIZER;

struct sg_grant {
  char *user;
  char *vhost;
  sg_scopes_t scopes;
  int64_t exp; /* 0: none */
  uv_timer_t timer;
  unsigned timer_on : 1;
  void (*expired_cb)(void *owner);
  void *owner;
};

struct sg_access_req {
  uv_work_t work;
  char *login, *passcode, *token, *vhost;
  sg_access_cb done_cb;
  void *owner; /* NULL once cancelled */
  sg_grant_t *grant;
  const char *why;
};

static int read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -errno;
  char *buf = malloc(MAX_FILE_BYTES + 1);
  if (buf == NULL) {
    fclose(f);
    return SG_ERR_NOMEM;
  }
  size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
  int err = ferror(f);
  fclose(f);
  if (err || n > MAX_FILE_BYTES) {
    free(buf);
    return err ? -EIO : -EFBIG;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int load_users(sg_users_t *into) {
  char *text;
  size_t len, line = 0;
  const char *why = "";
  int r = read_file(acfg->users_file, &text, &len);
  if (r != 0) {
    fprintf(stderr, "stompgate: invalid setting 'users-file' = '%s': %s\n", acfg->users_file,
            sg_strerror(r));
    return -1;
  }
  r = sg_users_parse(into, text, len, acfg->jwt_scope_prefix ? acfg->jwt_scope_prefix : "", &line,
                     &why);
  free(text);
  if (r != 0) {
    fprintf(stderr, "stompgate: invalid setting 'users-file' = '%s': line %zu: %s\n",
            acfg->users_file, line, why);
    return -1;
  }
  return 0;
}

static int load_keys(void) {
  char *text;
  size_t len;
  int r;
  if (acfg->jwt_secret_file) {
    if ((r = read_file(acfg->jwt_secret_file, &text, &len)) != 0) {
      fprintf(stderr, "stompgate: invalid setting 'jwt-secret-file' = '%s': %s\n",
              acfg->jwt_secret_file, sg_strerror(r));
      return -1;
    }
    /* Editors end files with a newline; it is not part of the secret. */
    if (len && text[len - 1] == '\n') len--;
    if (len && text[len - 1] == '\r') len--;
    r = len < 32 ? SG_ERR_INVALID : sg_jwt_keys_add_secret(&keys, text, len, NULL);
    memset(text, 0, len);
    free(text);
    if (r != 0) {
      fprintf(stderr, "stompgate: invalid setting 'jwt-secret-file' = '%s': %s\n",
              acfg->jwt_secret_file,
              r == SG_ERR_INVALID ? "an HS256 secret needs at least 32 bytes" : sg_strerror(r));
      return -1;
    }
  }
  for (size_t i = 0; i < acfg->jwt_key_files.n; i++) {
    const char *spec = acfg->jwt_key_files.v[i], *eq = strchr(spec, '=');
    char *kid = eq ? strndup(spec, (size_t)(eq - spec)) : NULL;
    const char *path = eq ? eq + 1 : spec, *why = "";
    if ((r = read_file(path, &text, &len)) != 0) {
      fprintf(stderr, "stompgate: invalid setting 'jwt-key-file' = '%s': %s\n", spec,
              sg_strerror(r));
      free(kid);
      return -1;
    }
    r = sg_jwt_keys_add_pem(&keys, text, len, kid, &why);
    free(text);
    free(kid);
    if (r < 0) {
      fprintf(stderr, "stompgate: invalid setting 'jwt-key-file' = '%s': %s\n", spec,
              r == SG_ERR_INVALID ? why : sg_strerror(r));
      return -1;
    }
  }
  return 0;
}

int sg_access_init(const sg_config_t *cfg) {
  acfg = cfg;
  if (cfg->auth == SG_AUTH_JWT) return load_keys();
  if (cfg->auth == SG_AUTH_FILE) return load_users(&users);
  return 0;
}

int sg_access_reload(void) {
  if (acfg == NULL || acfg->auth != SG_AUTH_FILE) return 1;
  sg_users_t fresh = {NULL, 0};
  if (load_users(&fresh) != 0) return -1;
  pthread_rwlock_wrlock(&users_lock);
  sg_users_t old = users;
  users = fresh;
  pthread_rwlock_unlock(&users_lock);
  sg_users_free(&old);
  return 0;
}

/* ---------- grants ---------- */

static void grant_free(sg_grant_t *g) {
  free(g->user);
  free(g->vhost);
  sg_scopes_free(&g->scopes);
  free(g);
}

const char *sg_grant_user(const sg_grant_t *g) { return g->user; }

static void grant_timer_cb(uv_timer_t *t) {
  sg_grant_t *g = t->data;
  if (g->expired_cb) g->expired_cb(g->owner);
}

int sg_grant_watch(sg_grant_t *g, uv_loop_t *loop, void (*expired_cb)(void *owner), void *owner) {
  if (g->exp == 0) return 0;
  int r = uv_timer_init(loop, &g->timer);
  if (r) return r;
  g->timer_on = 1;
  g->timer.data = g;
  g->expired_cb = expired_cb;
  g->owner = owner;
  /* The token stays good for the leeway after exp, as at CONNECT. */
  int64_t left = g->exp + (int64_t)acfg->jwt_leeway_s - (int64_t)time(NULL);
  uint64_t ms = left <= 0 ? 0 : (uint64_t)left * 1000;
  return uv_timer_start(&g->timer, grant_timer_cb, ms, 0);
}

static void grant_closed_cb(uv_handle_t *h) { grant_free(h->data); }

void sg_grant_release(sg_grant_t *g) {
  if (g == NULL) return;
  if (g->timer_on) {
    g->expired_cb = NULL;
    uv_close((uv_handle_t *)&g->timer, grant_closed_cb);
  } else {
    grant_free(g);
  }
}

int sg_grant_allows(const sg_grant_t *g, int perm, int kind, const char *name, const char *key,
                    const char *command, const char *destination, char *detail, size_t cap) {
  sg_resource_t res;
  if (!sg_authz_resource(kind, name, key, &res)) return 1;
  if (sg_scopes_allow(&g->scopes, perm, g->vhost, res.name, res.rk)) return 1;
  sg_authz_refusal(detail, cap, perm, &res, g->vhost, g->user, command, destination);
  return 0;
}

/* ---------- checks on the thread pool ---------- */

static void check_work(uv_work_t *w) {
  sg_access_req_t *q = w->data;
  sg_grant_t *g = calloc(1, sizeof(*g));
  if (g == NULL || (g->vhost = strdup(q->vhost)) == NULL) {
    q->why = "out of memory";
    goto fail;
  }
  if (acfg->auth == SG_AUTH_JWT) {
    if (q->token == NULL || *q->token == '\0') {
      q->why = "no token: send a JWT as the CONNECT passcode or an Authorization: Bearer header";
      goto fail;
    }
    sg_principal_t p;
    sg_jwt_opts_t o = {(int64_t)time(NULL), (int64_t)acfg->jwt_leeway_s, acfg->jwt_audience,
                       acfg->jwt_user_claim, acfg->jwt_scope_prefix};
    if (sg_jwt_verify(&keys, q->token, strlen(q->token), &o, &p, &q->why) != 0) goto fail;
    g->user = p.user;
    g->scopes = p.scopes;
    g->exp = p.exp;
  } else {
    const char *login = q->login ? q->login : "";
    pthread_rwlock_rdlock(&users_lock);
    const sg_user_t *u = sg_users_find(&users, login);
    int ok = 0;
    char *hash = u ? strdup(u->hash) : NULL;
    sg_scopes_t sc = {NULL, 0};
    if (u) {
      /* The scopes are copied so that a reload cannot change them under an
       * open session. */
      for (size_t i = 0; i < u->scopes.n; i++) {
        const sg_scope_t *s = &u->scopes.v[i];
        sg_scope_t c = {s->perm, strdup(s->vhost), strdup(s->name), s->rk ? strdup(s->rk) : NULL};
        sg_scope_t *nv = realloc(sc.v, (sc.n + 1) * sizeof(*nv));
        if (nv) sc.v = nv;
        if (!nv || !c.vhost || !c.name || (s->rk && !c.rk)) {
          free(c.vhost), free(c.name), free(c.rk);
          sg_scopes_free(&sc);
          u = NULL;
          break;
        }
        sc.v[sc.n++] = c;
      }
    }
    pthread_rwlock_unlock(&users_lock);
    /* The slow hash runs outside the lock, so a reload does not wait. An
     * unknown user costs the same hash, so the time taken does not tell
     * which names exist. */
    static const char dummy[] = "pbkdf2-sha256$600000$AAAAAAAAAAAAAAAAAAAAAA==$"
                                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    int match = sg_password_check(u && hash ? hash : dummy, q->passcode ? q->passcode : "",
                                  q->passcode ? strlen(q->passcode) : 0);
    ok = u && hash && match == 1;
    free(hash);
    if (!ok) {
      sg_scopes_free(&sc);
      q->why = "unknown user or wrong password";
      goto fail;
    }
    g->scopes = sc;
    if ((g->user = strdup(login)) == NULL) {
      q->why = "out of memory";
      goto fail;
    }
  }
  q->grant = g;
  return;
fail:
  if (g) grant_free(g);
}

static void req_free(sg_access_req_t *q) {
  free(q->login);
  if (q->passcode) memset(q->passcode, 0, strlen(q->passcode));
  free(q->passcode);
  free(q->token);
  free(q->vhost);
  free(q);
}

static void check_done(uv_work_t *w, int status) {
  sg_access_req_t *q = w->data;
  if (q->owner == NULL || status != 0) {
    if (q->grant) grant_free(q->grant);
  } else {
    q->done_cb(q->owner, q->grant, q->grant ? NULL : q->why);
  }
  req_free(q);
}

static char *dup_or_null(const char *s, int *fail) {
  if (s == NULL) return NULL;
  char *d = strdup(s);
  if (d == NULL) *fail = 1;
  return d;
}

int sg_access_check(uv_loop_t *loop, const char *login, const char *passcode, const char *bearer,
                    const char *vhost, sg_access_cb done_cb, void *owner, sg_access_req_t **req) {
  sg_access_req_t *q = calloc(1, sizeof(*q));
  if (q == NULL) return SG_ERR_NOMEM;
  int fail = 0;
  const char *token = passcode && *passcode ? passcode : bearer;
  q->login = dup_or_null(login, &fail);
  q->passcode = dup_or_null(passcode, &fail);
  q->token = acfg->auth == SG_AUTH_JWT ? dup_or_null(token, &fail) : NULL;
  q->vhost = dup_or_null(vhost, &fail);
  q->done_cb = done_cb;
  q->owner = owner;
  q->work.data = q;
  int r = fail ? SG_ERR_NOMEM : uv_queue_work(loop, &q->work, check_work, check_done);
  if (r != 0) {
    req_free(q);
    return r;
  }
  *req = q;
  return 0;
}

void sg_access_cancel(sg_access_req_t *req) {
  /* The work may be running already; its result is dropped when it ends. */
  if (req) req->owner = NULL;
}

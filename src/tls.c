/* SPDX-License-Identifier: MIT */
#include "tls.h"

#include <uv.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct sg_tls {
  SSL *ssl;
  BIO *rbio; /* ciphertext in, owned by ssl */
  BIO *wbio; /* ciphertext out, owned by ssl */
  char err[160];
};

static SSL_CTX *ctx;

static const char *ssl_err_text(char *buf, size_t cap) {
  unsigned long e = ERR_get_error();
  if (e == 0) snprintf(buf, cap, "unknown error");
  else ERR_error_string_n(e, buf, cap);
  ERR_clear_error();
  return buf;
}

/* Marks the connections of the STOMP listener (SSL app data). */
static char stream_tag;

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
  (void)arg;
  static const unsigned char h11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char *sel;
  /* STOMP over TLS has no registered ALPN name: whatever a client offers
   * goes unanswered rather than refused. */
  if (SSL_get_app_data(ssl) == &stream_tag) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11), in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* WebSocket needs HTTP/1.1 */
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static int fail(SSL_CTX *c, const char *setting, const char *file) {
  char buf[200];
  sg_log_error("TLS setting '%s' = '%s': %s", setting, file, ssl_err_text(buf, sizeof(buf)));
  SSL_CTX_free(c);
  return -1;
}

static int build(const sg_config_t *cfg, SSL_CTX **out) {
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (c == NULL) return fail(NULL, "tls-cert", cfg->tls_cert);
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(c, cfg->tls_cert) != 1)
    return fail(c, "tls-cert", cfg->tls_cert);
  if (SSL_CTX_use_PrivateKey_file(c, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
    return fail(c, "tls-key", cfg->tls_key);
  if (SSL_CTX_check_private_key(c) != 1) return fail(c, "tls-key", cfg->tls_key);
  if (cfg->tls_chain) {
    FILE *f = fopen(cfg->tls_chain, "r");
    if (f == NULL) return fail(c, "tls-chain", cfg->tls_chain);
    X509 *x;
    int n = 0;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
      if (SSL_CTX_add0_chain_cert(c, x) != 1) {
        X509_free(x);
        fclose(f);
        return fail(c, "tls-chain", cfg->tls_chain);
      }
      n++;
    }
    fclose(f);
    ERR_clear_error(); /* the loop ends on "no start line" */
    if (n == 0) return fail(c, "tls-chain", cfg->tls_chain);
  }
  if (cfg->tls_client_ca) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_client_ca);
    if (names == NULL || SSL_CTX_load_verify_locations(c, cfg->tls_client_ca, NULL) != 1) {
      if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
      return fail(c, "tls-client-ca", cfg->tls_client_ca);
    }
    SSL_CTX_set_client_CA_list(c, names);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  SSL_CTX_set_alpn_select_cb(c, alpn_cb, NULL);
  *out = c;
  return 0;
}

int sg_tls_init(const sg_config_t *cfg) {
  if (cfg->tls_cert == NULL) return 0;
  return build(cfg, &ctx);
}

/* Workers make connections on the context while the main thread may swap
 * it; SSL_new takes its own reference, so the lock covers only that. */
static uv_mutex_t ctx_lock;
static uv_once_t ctx_once = UV_ONCE_INIT;

static void ctx_lock_init(void) {
  if (uv_mutex_init(&ctx_lock) != 0) abort();
}

int sg_tls_reload(const sg_config_t *cfg) {
  if (ctx == NULL) return 0;
  SSL_CTX *n, *old;
  if (build(cfg, &n) != 0) return -1;
  uv_once(&ctx_once, ctx_lock_init);
  uv_mutex_lock(&ctx_lock);
  old = ctx;
  ctx = n;
  uv_mutex_unlock(&ctx_lock);
  /* Open connections hold their own reference to the old context. */
  SSL_CTX_free(old);
  return 0;
}

int sg_tls_enabled(void) { return ctx != NULL; }

static sg_tls_t *tls_new(int stream) {
  sg_tls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  uv_once(&ctx_once, ctx_lock_init);
  uv_mutex_lock(&ctx_lock);
  t->ssl = SSL_new(ctx);
  uv_mutex_unlock(&ctx_lock);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    return NULL;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_accept_state(t->ssl);
  if (stream) {
    SSL_set_app_data(t->ssl, &stream_tag);
    /* No TLS 1.3 session tickets after the handshake: a STOMP client
     * speaks first, and stomp.py over Python's ssl module, whose reader
     * thread takes the tickets, could hang before sending CONNECT (seen
     * one run in five). */
    SSL_set_num_tickets(t->ssl, 0);
  }
  return t;
}

sg_tls_t *sg_tls_new(void) { return tls_new(0); }
sg_tls_t *sg_tls_new_stream(void) { return tls_new(1); }

void sg_tls_free(sg_tls_t *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);
  free(t);
}

static int drain_out(sg_tls_t *t, sg_buf_t *net) {
  size_t pending;
  while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
    if (sg_buf_reserve(net, pending) != 0) return -1;
    int n = BIO_read(t->wbio, net->base + net->len, (int)pending);
    if (n <= 0) break;
    net->len += (size_t)n;
    net->base[net->len] = '\0';
  }
  return 0;
}

int sg_tls_feed(sg_tls_t *t, const void *in, size_t len, sg_buf_t *plain, sg_buf_t *net) {
  if (len && BIO_write(t->rbio, in, (int)len) != (int)len) return -1;
  int rc = 0;
  if (!SSL_is_init_finished(t->ssl)) {
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        ssl_err_text(t->err, sizeof(t->err));
        drain_out(t, net);
        return -1;
      }
    }
  }
  while (SSL_is_init_finished(t->ssl)) {
    if (sg_buf_reserve(plain, 16384) != 0) return -1;
    int n = SSL_read(t->ssl, plain->base + plain->len, 16384);
    if (n > 0) {
      plain->len += (size_t)n;
      plain->base[plain->len] = '\0';
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      rc = 1;
      break;
    }
    ssl_err_text(t->err, sizeof(t->err));
    rc = -1;
    break;
  }
  if (drain_out(t, net) != 0) return -1;
  return rc;
}

int sg_tls_encrypt(sg_tls_t *t, const void *data, size_t len, sg_buf_t *net) {
  const char *p = data;
  while (len > 0) {
    size_t chunk = len > 16384 ? 16384 : len;
    int n = SSL_write(t->ssl, p, (int)chunk);
    if (n <= 0) {
      ssl_err_text(t->err, sizeof(t->err));
      return -1;
    }
    p += n;
    len -= (size_t)n;
    if (drain_out(t, net) != 0) return -1;
  }
  return drain_out(t, net);
}

void sg_tls_close_notify(sg_tls_t *t, sg_buf_t *net) {
  if (!SSL_is_init_finished(t->ssl)) return;
  SSL_shutdown(t->ssl);
  drain_out(t, net);
}

int sg_tls_handshake_done(const sg_tls_t *t) { return SSL_is_init_finished(t->ssl); }

const char *sg_tls_error(const sg_tls_t *t) { return t->err[0] ? t->err : "TLS failure"; }

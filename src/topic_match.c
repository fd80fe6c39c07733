/* SPDX-License-Identifier: MIT */
/* The matcher behind routing in the gateway. Binding keys live in a trie
 * whose edges all sit in one hash table keyed by (parent node, word), the
 * shape RabbitMQ's own topic trie has; a direct or fanout matcher is the
 * same table one level deep, with the whole key as its only word. A topic
 * match runs the trie as an automaton: for each word of the routing key it
 * computes the set of nodes the key's prefix can have reached, each node
 * at most once, so '#' never makes the walk branch out of control. */
#include "stompgate/topic_match.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

enum { WORD_PLAIN, WORD_STAR, WORD_HASH };

struct sg_match_node {
  sg_match_node_t *parent;
  sg_match_node_t *hnext;       /* the next node in its edge bucket */
  sg_match_node_t *star, *hash; /* children "*" and "#" (also in the table) */
  sg_match_binding_t *binding;  /* subscriptions whose key ends here */
  uint64_t mark;                /* the walk step that last put it in a set */
  uint32_t hv;                  /* hash of (parent, word) */
  uint32_t nchildren;
  uint16_t len;
  uint8_t wild;                 /* WORD_* (topic only) */
  char word[];
};

struct sg_match_binding {
  sg_match_binding_t *next, *prev; /* the matcher's list of keys */
  sg_match_binding_t *dead_next;   /* on the matcher's dead list */
  sg_matcher_sub_t *subs;
  sg_match_node_t *node;
  size_t refs;
  uint64_t mark;                   /* the match that last found it */
  unsigned dead : 1;
  size_t len;
  char key[];
};

/* ---------- hashing ---------- */

/* SipHash-1-3 of a word under the matcher's seed: binding words come from
 * clients, and a keyed hash keeps them from choosing colliding ones. */
static uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIP_ROUND()                                                           \
  do {                                                                        \
    v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                 \
    v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                    \
    v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                    \
    v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                 \
  } while (0)

static uint64_t word_hash(const sg_matcher_t *m, const char *w, size_t len) {
  uint64_t v0 = m->seed[0] ^ 0x736f6d6570736575ull, v1 = m->seed[1] ^ 0x646f72616e646f6dull;
  uint64_t v2 = m->seed[0] ^ 0x6c7967656e657261ull, v3 = m->seed[1] ^ 0x7465646279746573ull;
  const unsigned char *p = (const unsigned char *)w;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t b = 0;
    for (int k = 7; k >= 0; k--) b = (b << 8) | p[i + k];
    v3 ^= b;
    SIP_ROUND();
    v0 ^= b;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t k = 0; i + k < len; k++) b |= (uint64_t)p[i + k] << (8 * k);
  v3 ^= b;
  SIP_ROUND();
  v0 ^= b;
  v2 ^= 0xff;
  SIP_ROUND();
  SIP_ROUND();
  SIP_ROUND();
  return v0 ^ v1 ^ v2 ^ v3;
}

/* Folds the parent in, so that one word hashed once per step serves every
 * node of the step's set. */
static uint32_t edge_hv(uint64_t wh, const sg_match_node_t *parent) {
  uint64_t h = wh ^ ((uint64_t)(uintptr_t)parent * 0x9e3779b97f4a7c15ull);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return (uint32_t)h;
}

/* ---------- the edge table ---------- */

static sg_match_node_t *edge_find(const sg_matcher_t *m, const sg_match_node_t *parent,
                                  const char *w, size_t len, uint64_t wh) {
  if (m->nedges == 0) return NULL;
  uint32_t hv = edge_hv(wh, parent);
  for (sg_match_node_t *n = m->buckets[hv & (m->nbuckets - 1)]; n != NULL; n = n->hnext)
    if (n->hv == hv && n->parent == parent && n->len == len && memcmp(n->word, w, len) == 0)
      return n;
  return NULL;
}

static int edge_grow(sg_matcher_t *m) {
  size_t nb = m->nbuckets ? m->nbuckets * 2 : 16;
  sg_match_node_t **b = calloc(nb, sizeof(*b));
  if (b == NULL) return SG_ERR_NOMEM;
  for (size_t i = 0; i < m->nbuckets; i++) {
    sg_match_node_t *n = m->buckets[i];
    while (n != NULL) {
      sg_match_node_t *next = n->hnext;
      n->hnext = b[n->hv & (nb - 1)];
      b[n->hv & (nb - 1)] = n;
      n = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
  return 0;
}

static void edge_unlink(sg_matcher_t *m, sg_match_node_t *n) {
  sg_match_node_t **p = &m->buckets[n->hv & (m->nbuckets - 1)];
  while (*p != n) p = &(*p)->hnext;
  *p = n->hnext;
  m->nedges--;
}

static sg_match_node_t *node_new(const char *w, size_t len) {
  sg_match_node_t *n = calloc(1, sizeof(*n) + len + 1);
  if (n == NULL) return NULL;
  n->len = (uint16_t)len;
  memcpy(n->word, w, len);
  return n;
}

static int word_wild(const sg_matcher_t *m, const char *w, size_t len) {
  if (m->kind != SG_MATCH_TOPIC || len != 1) return WORD_PLAIN;
  return w[0] == '*' ? WORD_STAR : w[0] == '#' ? WORD_HASH : WORD_PLAIN;
}

/* The child of parent along word w, made when missing; NULL when out of
 * memory. */
static sg_match_node_t *child_make(sg_matcher_t *m, sg_match_node_t *parent, const char *w,
                                   size_t len) {
  uint64_t wh = word_hash(m, w, len);
  sg_match_node_t *c = edge_find(m, parent, w, len, wh);
  if (c != NULL) return c;
  if (m->nedges >= m->nbuckets && edge_grow(m) != 0) return NULL;
  if ((c = node_new(w, len)) == NULL) return NULL;
  c->parent = parent;
  c->hv = edge_hv(wh, parent);
  c->wild = (uint8_t)word_wild(m, w, len);
  if (c->wild == WORD_STAR) parent->star = c;
  if (c->wild == WORD_HASH) parent->hash = c;
  sg_match_node_t **b = &m->buckets[c->hv & (m->nbuckets - 1)];
  c->hnext = *b;
  *b = c;
  m->nedges++;
  parent->nchildren++;
  return c;
}

/* Frees n and then its ancestors while they lead to no binding. */
static void prune(sg_matcher_t *m, sg_match_node_t *n) {
  while (n != m->root && n->binding == NULL && n->nchildren == 0) {
    sg_match_node_t *parent = n->parent;
    if (n->wild == WORD_STAR) parent->star = NULL;
    if (n->wild == WORD_HASH) parent->hash = NULL;
    edge_unlink(m, n);
    parent->nchildren--;
    free(n);
    n = parent;
  }
}

/* Splits key[0..len) into its topic words: the empty key has none. Sets
 * *wl and returns the start of the word at *pos, advancing *pos past its
 * dot; NULL after the last word. */
static const char *next_word(const char *key, size_t len, size_t *pos, size_t *wl) {
  if (*pos > len || len == 0) return NULL;
  const char *w = key + *pos;
  const char *dot = memchr(w, '.', len - *pos);
  *wl = dot ? (size_t)(dot - w) : len - *pos;
  *pos += *wl + 1; /* past the end after the last word */
  return w;
}

/* The node of binding key key, or NULL when no binding key has its path. */
static sg_match_node_t *node_of(const sg_matcher_t *m, const char *key, size_t len) {
  if (m->root == NULL) return NULL;
  if (m->kind != SG_MATCH_TOPIC) return edge_find(m, m->root, key, len, word_hash(m, key, len));
  sg_match_node_t *n = m->root;
  size_t pos = 0, wl;
  const char *w;
  while (n != NULL && (w = next_word(key, len, &pos, &wl)) != NULL)
    n = edge_find(m, n, w, wl, word_hash(m, w, wl));
  return n;
}

/* ---------- bindings and subscriptions ---------- */

int sg_match_kind_of(const char *exchange_type) {
  if (exchange_type == NULL) return SG_ERR_INVALID;
  if (strcmp(exchange_type, "topic") == 0) return SG_MATCH_TOPIC;
  if (strcmp(exchange_type, "direct") == 0) return SG_MATCH_DIRECT;
  if (strcmp(exchange_type, "fanout") == 0) return SG_MATCH_FANOUT;
  return SG_ERR_INVALID;
}

int sg_topic_key_exact(const char *key, size_t len) {
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && key[i] != '.') continue;
    if (i - start == 1 && (key[start] == '*' || key[start] == '#')) return 0;
    start = i + 1;
  }
  return 1;
}

/* Splits a topic key into its words: at most SG_MATCH_KEY_MAX + 1. */
typedef struct {
  const char *w[SG_MATCH_KEY_MAX + 1];
  size_t len[SG_MATCH_KEY_MAX + 1];
  size_t n;
} words_t;

static void split_words(const char *key, size_t len, words_t *out) {
  out->n = 0;
  if (len == 0) return;
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && key[i] != '.') continue;
    out->w[out->n] = key + start;
    out->len[out->n++] = i - start;
    start = i + 1;
  }
}

static int word_is(const words_t *x, size_t i, char c) { return x->len[i] == 1 && x->w[i][0] == c; }

/* Pattern words against key words; the key's '*' and '#' are wildcards
 * when wild, plain words otherwise. */
static int topic_cover(const char *pat, size_t plen, const char *key, size_t klen, int wild) {
  words_t pw, kw, *p = &pw, *k = &kw;
  split_words(pat, plen, p);
  split_words(key, klen, k);
  size_t np = p->n, nk = k->n;
  /* cov[i][j]: pattern words i.. cover key words j.., filled backwards. */
  unsigned char small[256], *cov = small;
  if ((np + 1) * (nk + 1) > sizeof(small) && (cov = malloc((np + 1) * (nk + 1))) == NULL) return 0;
#define COV(i, j) cov[(i) * (nk + 1) + (j)]
  COV(np, nk) = 1;
  for (size_t i = np + 1; i-- > 0;) {
    for (size_t j = nk + 1; j-- > 0;) {
      if (i == np) {
        COV(i, j) = j == nk;
      } else if (word_is(p, i, '#')) {
        /* '#' takes none of the key's words, or its next one, whatever
         * that is (a literal, '*' or '#'). */
        COV(i, j) = COV(i + 1, j) || (j < nk && COV(i, j + 1));
      } else if (j == nk || (wild && word_is(k, j, '#'))) {
        COV(i, j) = 0; /* one word cannot cover none, nor any number */
      } else if (word_is(p, i, '*')) {
        COV(i, j) = COV(i + 1, j + 1);
      } else if (wild && word_is(k, j, '*')) {
        COV(i, j) = 0;
      } else {
        COV(i, j) = p->len[i] == k->len[j] && memcmp(p->w[i], k->w[j], p->len[i]) == 0 &&
                    COV(i + 1, j + 1);
      }
    }
  }
  int r = COV(0, 0);
#undef COV
  if (cov != small) free(cov);
  return r;
}

int sg_topic_covers(const char *pat, size_t plen, const char *key, size_t klen) {
  if (plen > SG_MATCH_KEY_MAX || klen > SG_MATCH_KEY_MAX) return 0;
  return topic_cover(pat, plen, key, klen, 1);
}

int sg_topic_match_one(const char *pat, size_t plen, const char *rk, size_t rklen) {
  if (plen > SG_MATCH_KEY_MAX || rklen > SG_MATCH_KEY_MAX) return 0;
  return topic_cover(pat, plen, rk, rklen, 0);
}

int sg_matcher_init(sg_matcher_t *m, sg_match_kind_t kind, const uint64_t seed[2]) {
  memset(m, 0, sizeof(*m));
  if (kind != SG_MATCH_TOPIC && kind != SG_MATCH_DIRECT && kind != SG_MATCH_FANOUT)
    return SG_ERR_INVALID;
  m->kind = kind;
  m->seed[0] = seed[0];
  m->seed[1] = seed[1];
  return 0;
}

void sg_matcher_free(sg_matcher_t *m) {
  sg_match_binding_t *b = m->bindings;
  while (b != NULL) {
    sg_match_binding_t *next = b->next;
    for (sg_matcher_sub_t *s = b->subs, *sn; s != NULL; s = sn) {
      sn = s->next;
      s->next = s->prev = NULL;
      s->binding = NULL;
    }
    free(b);
    b = next;
  }
  for (size_t i = 0; i < m->nbuckets; i++) {
    sg_match_node_t *n = m->buckets[i];
    while (n != NULL) {
      sg_match_node_t *next = n->hnext;
      free(n);
      n = next;
    }
  }
  free(m->buckets);
  free(m->root);
  free(m->set[0]);
  free(m->set[1]);
  free(m->found);
  sg_match_kind_t kind = m->kind;
  uint64_t seed[2] = {m->seed[0], m->seed[1]};
  sg_matcher_init(m, kind, seed);
}

/* Unlinks b, which has no subscription left, and frees it with the part of
 * the trie that led only to it. */
static void binding_drop(sg_matcher_t *m, sg_match_binding_t *b) {
  if (b->prev) b->prev->next = b->next;
  else m->bindings = b->next;
  if (b->next) b->next->prev = b->prev;
  sg_match_node_t *n = b->node;
  n->binding = NULL;
  free(b);
  prune(m, n);
}

int sg_matcher_add(sg_matcher_t *m, sg_matcher_sub_t *s, const char *key, size_t len) {
  if (s->binding != NULL || len > SG_MATCH_KEY_MAX) return SG_ERR_INVALID;
  if (m->root == NULL && (m->root = node_new("", 0)) == NULL) return SG_ERR_NOMEM;
  sg_match_node_t *n = m->root;
  if (m->kind == SG_MATCH_TOPIC) {
    size_t pos = 0, wl;
    const char *w;
    while ((w = next_word(key, len, &pos, &wl)) != NULL) {
      sg_match_node_t *c = child_make(m, n, w, wl);
      if (c == NULL) {
        prune(m, n);
        return SG_ERR_NOMEM;
      }
      n = c;
    }
  } else if ((n = child_make(m, m->root, key, len)) == NULL) {
    return SG_ERR_NOMEM;
  }
  sg_match_binding_t *b = n->binding;
  if (b == NULL) {
    if ((b = calloc(1, sizeof(*b) + len + 1)) == NULL) {
      prune(m, n);
      return SG_ERR_NOMEM;
    }
    memcpy(b->key, key, len);
    b->len = len;
    b->node = n;
    n->binding = b;
    b->next = m->bindings;
    if (b->next) b->next->prev = b;
    m->bindings = b;
  }
  /* A binding emptied during the running match is still in place and
   * comes back to life here. */
  int first = b->refs == 0;
  s->prev = NULL;
  s->next = b->subs;
  if (s->next) s->next->prev = s;
  b->subs = s;
  s->binding = b;
  b->refs++;
  m->nsubs++;
  m->nkeys += first;
  return first;
}

int sg_matcher_remove(sg_matcher_t *m, sg_matcher_sub_t *s) {
  sg_match_binding_t *b = s->binding;
  if (b == NULL) return 0;
  if (m->cursor == s) m->cursor = s->next;
  if (s->prev) s->prev->next = s->next;
  else b->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = NULL;
  s->binding = NULL;
  m->nsubs--;
  if (--b->refs > 0) return 0;
  m->nkeys--;
  if (!m->busy) {
    binding_drop(m, b);
  } else if (!b->dead) {
    /* The running match holds b in its list of found bindings: free it
     * once the match is over. */
    b->dead = 1;
    b->dead_next = m->dead;
    m->dead = b;
  }
  return 1;
}

const char *sg_matcher_sub_key(const sg_matcher_sub_t *s, size_t *len) {
  if (s->binding == NULL) return NULL;
  if (len != NULL) *len = s->binding->len;
  return s->binding->key;
}

size_t sg_matcher_refs(const sg_matcher_t *m, const char *key, size_t len) {
  if (len > SG_MATCH_KEY_MAX) return 0;
  sg_match_node_t *n = node_of(m, key, len);
  return n && n->binding ? n->binding->refs : 0;
}

size_t sg_matcher_keys(const sg_matcher_t *m) { return m->nkeys; }

size_t sg_matcher_subs(const sg_matcher_t *m) { return m->nsubs; }

void sg_matcher_each_key(const sg_matcher_t *m, sg_matcher_key_cb cb, void *arg) {
  for (const sg_match_binding_t *b = m->bindings; b != NULL; b = b->next)
    if (b->refs > 0) cb(b->key, b->len, b->refs, arg);
}

/* ---------- matching ---------- */

/* The capacity after cap, doubled, or 0 when that would overflow. */
static size_t next_cap(size_t cap, size_t elem) {
  size_t nc = cap ? cap * 2 : 16;
  return nc > SIZE_MAX / elem ? 0 : nc;
}

static int found_add(sg_matcher_t *m, sg_match_binding_t *b, uint64_t mark, size_t *nfound) {
  if (b == NULL || b->refs == 0 || b->mark == mark) return 0;
  if (*nfound == m->foundcap) {
    size_t nc = next_cap(m->foundcap, sizeof(*m->found));
    sg_match_binding_t **f = nc ? realloc(m->found, nc * sizeof(*f)) : NULL;
    if (f == NULL) return SG_ERR_NOMEM;
    m->found = f;
    m->foundcap = nc;
  }
  b->mark = mark;
  m->found[(*nfound)++] = b;
  return 0;
}

/* Puts n in set `which` for the current step, with the nodes it reaches
 * through "#" edges without consuming a word ("#" may match zero). The
 * two sets share one capacity, which is grown for both. */
static int set_add(sg_matcher_t *m, int which, size_t *len, sg_match_node_t *n) {
  for (; n != NULL && n->mark != m->stamp; n = n->hash) {
    if (*len == m->setcap) {
      size_t nc = next_cap(m->setcap, sizeof(*m->set[0]));
      for (int i = 0; i < 2; i++) {
        sg_match_node_t **p = nc ? realloc(m->set[i], nc * sizeof(*p)) : NULL;
        if (p == NULL) return SG_ERR_NOMEM; /* the larger one is kept */
        m->set[i] = p;
      }
      m->setcap = nc;
    }
    n->mark = m->stamp;
    m->set[which][(*len)++] = n;
  }
  return 0;
}

static int topic_walk(sg_matcher_t *m, const char *key, size_t len, uint64_t bmark,
                      size_t *nfound) {
  int cur = 0;
  size_t ncur = 0, pos = 0, wl;
  const char *w;
  m->stamp++;
  if (set_add(m, cur, &ncur, m->root) != 0) return SG_ERR_NOMEM;
  while (ncur > 0 && (w = next_word(key, len, &pos, &wl)) != NULL) {
    int next = !cur;
    size_t nnext = 0;
    /* A routing key's "*" or "#" is a plain word that only wildcards
     * match, and the edges spelled "*" and "#" are those wildcards, taken
     * below: no plain edge to look up. */
    int plain = word_wild(m, w, wl) == WORD_PLAIN;
    uint64_t wh = plain ? word_hash(m, w, wl) : 0;
    m->stamp++;
    for (size_t i = 0; i < ncur; i++) {
      sg_match_node_t *n = m->set[cur][i];
      if ((plain && set_add(m, next, &nnext, edge_find(m, n, w, wl, wh)) != 0) ||
          set_add(m, next, &nnext, n->star) != 0 ||
          (n->wild == WORD_HASH && set_add(m, next, &nnext, n) != 0))
        return SG_ERR_NOMEM;
    }
    cur = next;
    ncur = nnext;
  }
  for (size_t i = 0; i < ncur; i++)
    if (found_add(m, m->set[cur][i]->binding, bmark, nfound) != 0) return SG_ERR_NOMEM;
  return 0;
}

static int collect(sg_matcher_t *m, const sg_match_key_t *keys, size_t nkeys, size_t *nfound) {
  uint64_t bmark = ++m->stamp;
  if (m->kind == SG_MATCH_FANOUT) {
    for (sg_match_binding_t *b = m->bindings; b != NULL; b = b->next)
      if (found_add(m, b, bmark, nfound) != 0) return SG_ERR_NOMEM;
    return 0;
  }
  for (size_t i = 0; i < nkeys; i++) {
    if (m->kind == SG_MATCH_TOPIC) {
      if (topic_walk(m, keys[i].base, keys[i].len, bmark, nfound) != 0) return SG_ERR_NOMEM;
    } else {
      sg_match_node_t *n = node_of(m, keys[i].base, keys[i].len);
      if (n && found_add(m, n->binding, bmark, nfound) != 0) return SG_ERR_NOMEM;
    }
  }
  return 0;
}

int sg_matcher_match(sg_matcher_t *m, const sg_match_key_t *keys, size_t nkeys,
                     sg_matcher_cb cb, void *arg) {
  if (m->busy) return SG_ERR_INVALID;
  if (nkeys == 0 || m->nsubs == 0) return 0;
  size_t nfound = 0;
  if (collect(m, keys, nkeys, &nfound) != 0) return SG_ERR_NOMEM;
  /* Found first, reported after: the callbacks may add and remove while
   * the trie is left alone and emptied bindings wait on the dead list. */
  m->busy = 1;
  int calls = 0;
  for (size_t i = 0; i < nfound; i++) {
    for (sg_matcher_sub_t *s = m->found[i]->subs; s != NULL; s = m->cursor) {
      m->cursor = s->next;
      cb(s, arg);
      if (calls < INT_MAX) calls++;
    }
  }
  m->cursor = NULL;
  m->busy = 0;
  while (m->dead != NULL) {
    sg_match_binding_t *b = m->dead;
    m->dead = b->dead_next;
    b->dead = 0;
    b->dead_next = NULL;
    if (b->refs == 0) binding_drop(m, b);
  }
  return calls;
}

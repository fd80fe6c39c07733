/* SPDX-License-Identifier: MIT */
/* Drives one matcher (topic, direct or fanout, from the first byte) with
 * the bytes that follow, read as a script: add a subscription under a key,
 * remove one, match a routing key with CC keys, match while the callback
 * removes or adds subscriptions, match a long key. Every answer is checked
 * against a model: the reference counts kept by hand, and a plain
 * recursive matcher over the word lists of binding and routing key. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "stompgate/err.h"
#include "stompgate/topic_match.h"

enum { NSLOTS = 32, BIND_MAX = 24, KEY_MAX = 40, LONGKEY_MAX = 3000, MAX_WORDS = LONGKEY_MAX + 1 };

typedef struct slot {
  sg_matcher_sub_t e;
  int added; /* in the model */
  char key[BIND_MAX + 1];
  size_t len;
  int hits;
} slot_t;

typedef struct script {
  const uint8_t *p;
  size_t n;
} script_t;

static slot_t slots[NSLOTS];
static sg_matcher_t matcher;
static int kind;

static unsigned next(script_t *s) {
  if (s->n == 0) return 0;
  s->n--;
  return *s->p++;
}

/* Bytes map onto a small alphabet so that words repeat and wildcards are
 * frequent. */
static size_t read_key(script_t *s, char *out, size_t max) {
  static const char alphabet[] = "ab.*#.c.";
  size_t len = next(s) % (max + 1);
  for (size_t i = 0; i < len; i++) out[i] = alphabet[next(s) % 8];
  out[len] = '\0';
  return len;
}

/* ---------- the reference ---------- */

typedef struct words {
  const char *w[MAX_WORDS];
  size_t len[MAX_WORDS];
  size_t n;
} words_t;

/* RabbitMQ's split: the empty key has no words, else split on every '.'. */
static void split(const char *key, size_t len, words_t *out) {
  out->n = 0;
  if (len == 0) return;
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || key[i] == '.') {
      FZ_CHECK(out->n < MAX_WORDS);
      out->w[out->n] = key + start;
      out->len[out->n++] = i - start;
      start = i + 1;
    }
  }
}

static int is_word(const words_t *ws, size_t i, const char *w) {
  return ws->len[i] == strlen(w) && memcmp(ws->w[i], w, ws->len[i]) == 0;
}

/* memo[i][j]: binding words from i match key words from j; -1 unknown.
 * The memo only keeps several '#' from taking exponential time. */
static signed char memo[BIND_MAX + 2][MAX_WORDS + 1];

static int ref_words(const words_t *b, size_t i, const words_t *k, size_t j) {
  if (memo[i][j] >= 0) return memo[i][j];
  int r;
  if (i == b->n)
    r = j == k->n;
  else if (is_word(b, i, "#"))
    r = ref_words(b, i + 1, k, j) || (j < k->n && ref_words(b, i, k, j + 1));
  else if (j == k->n)
    r = 0;
  else if (is_word(b, i, "*") ||
           (b->len[i] == k->len[j] && memcmp(b->w[i], k->w[j], b->len[i]) == 0))
    r = ref_words(b, i + 1, k, j + 1);
  else
    r = 0;
  memo[i][j] = (signed char)r;
  return r;
}

static int ref_match(const char *bind, size_t blen, const char *key, size_t klen) {
  if (kind == SG_MATCH_FANOUT) return 1;
  if (kind == SG_MATCH_DIRECT) return blen == klen && memcmp(bind, key, blen) == 0;
  static words_t b, k;
  split(bind, blen, &b);
  split(key, klen, &k);
  for (size_t i = 0; i <= b.n; i++) memset(memo[i], -1, k.n + 1);
  int r = ref_words(&b, 0, &k, 0);
  /* A key without wildcard words matches as a direct binding would: the
   * shared relay binds such keys on a direct exchange. */
  if (sg_topic_key_exact(bind, blen) && r != (blen == klen && memcmp(bind, key, blen) == 0))
    abort();
  /* One binding key against one routing key says the same (history
   * subscriptions filter their stream with it). */
  if (blen <= SG_MATCH_KEY_MAX && klen <= SG_MATCH_KEY_MAX &&
      sg_topic_match_one(bind, blen, key, klen) != r)
    abort();
  /* A key covers itself. */
  if (blen <= SG_MATCH_KEY_MAX && !sg_topic_covers(bind, blen, bind, blen)) abort();
  return r;
}

/* ---------- the model ---------- */

static size_t model_refs(const char *key, size_t len) {
  size_t n = 0;
  for (int i = 0; i < NSLOTS; i++)
    n += slots[i].added && slots[i].len == len && memcmp(slots[i].key, key, len) == 0;
  return n;
}

static void model_add(int i, const char *key, size_t len) {
  slot_t *s = &slots[i];
  int r = sg_matcher_add(&matcher, &s->e, key, len);
  if (s->added) {
    FZ_CHECK(r == SG_ERR_INVALID);
    return;
  }
  FZ_CHECK(r == (model_refs(key, len) == 0));
  memcpy(s->key, key, len);
  s->key[len] = '\0';
  s->len = len;
  s->added = 1;
  size_t l;
  const char *k = sg_matcher_sub_key(&s->e, &l);
  FZ_CHECK(k != NULL && l == len && memcmp(k, key, len) == 0 && k[len] == '\0');
}

static void model_remove(int i) {
  slot_t *s = &slots[i];
  int r = sg_matcher_remove(&matcher, &s->e);
  if (!s->added) {
    FZ_CHECK(r == 0);
    return;
  }
  s->added = 0;
  FZ_CHECK(r == (model_refs(s->key, s->len) == 0));
  FZ_CHECK(sg_matcher_sub_key(&s->e, NULL) == NULL);
}

static void sum_cb(const char *key, size_t len, size_t refs, void *arg) {
  FZ_CHECK(refs > 0 && refs == model_refs(key, len));
  *(size_t *)arg += refs;
}

static void model_check(void) {
  size_t subs = 0, keys = 0;
  for (int i = 0; i < NSLOTS; i++) {
    if (!slots[i].added) continue;
    subs++;
    int first = 1;
    for (int j = 0; j < i && first; j++)
      first = !(slots[j].added && slots[j].len == slots[i].len &&
                memcmp(slots[j].key, slots[i].key, slots[i].len) == 0);
    keys += first;
    FZ_CHECK(sg_matcher_refs(&matcher, slots[i].key, slots[i].len) ==
             model_refs(slots[i].key, slots[i].len));
  }
  FZ_CHECK(sg_matcher_subs(&matcher) == subs && sg_matcher_keys(&matcher) == keys);
  size_t sum = 0;
  sg_matcher_each_key(&matcher, sum_cb, &sum);
  FZ_CHECK(sum == subs);
}

/* ---------- matches ---------- */

enum { CHANGE_NONE, CHANGE_SELF, CHANGE_VICTIM, CHANGE_ADD };

typedef struct change {
  int what, victim, calls;
  const char *key;
  size_t len;
} change_t;

static void match_cb(sg_matcher_sub_t *e, void *arg) {
  change_t *c = arg;
  slot_t *s = (slot_t *)((char *)e - offsetof(slot_t, e));
  /* Reported: one of ours, added now, and never removed before. */
  FZ_CHECK(s >= slots && s < slots + NSLOTS && s->added && e->binding != NULL);
  s->hits++;
  if (c->calls++ == 0) {
    sg_match_key_t k = {"", 0};
    FZ_CHECK(sg_matcher_match(&matcher, &k, 1, match_cb, c) == SG_ERR_INVALID);
    if (c->what == CHANGE_VICTIM) model_remove(c->victim);
    if (c->what == CHANGE_ADD) model_add(c->victim, c->key, c->len);
  }
  if (c->what == CHANGE_SELF) model_remove((int)(s - slots));
}

static void run_match(const sg_match_key_t *keys, size_t nkeys, change_t *c) {
  int want[NSLOTS];
  for (int i = 0; i < NSLOTS; i++) {
    slots[i].hits = 0;
    want[i] = 0;
    for (size_t k = 0; k < nkeys && slots[i].added && !want[i]; k++)
      want[i] = ref_match(slots[i].key, slots[i].len, keys[k].base, keys[k].len);
  }
  int r = sg_matcher_match(&matcher, keys, nkeys, match_cb, c);
  FZ_CHECK(r == c->calls);
  for (int i = 0; i < NSLOTS; i++) {
    /* A subscription removed or added by the callback may or may not be
     * reported; any other exactly as the reference says. */
    if ((c->what == CHANGE_VICTIM || c->what == CHANGE_ADD) && i == c->victim)
      FZ_CHECK(slots[i].hits <= 1 && (c->what == CHANGE_ADD || slots[i].hits <= want[i]));
    else
      FZ_CHECK(slots[i].hits == want[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint64_t seed[2] = {0x5eed, 0xf00d};
  static char keybuf[4][KEY_MAX + 1], bindbuf[BIND_MAX + 1], longkey[LONGKEY_MAX + 1];
  script_t s = {data, size};
  kind = SG_MATCH_TOPIC + (int)(next(&s) % 3);
  memset(slots, 0, sizeof(slots));
  FZ_CHECK(sg_matcher_init(&matcher, (sg_match_kind_t)kind, seed) == 0);
  while (s.n > 0) {
    unsigned op = next(&s) % 8;
    if (op <= 2) {
      int i = (int)(next(&s) % NSLOTS);
      size_t len = read_key(&s, bindbuf, BIND_MAX);
      model_add(i, bindbuf, len);
    } else if (op == 3) {
      model_remove((int)(next(&s) % NSLOTS));
    } else if (op <= 6) {
      sg_match_key_t keys[4];
      size_t nkeys = 1 + next(&s) % 4;
      for (size_t k = 0; k < nkeys; k++)
        keys[k] = (sg_match_key_t){keybuf[k], read_key(&s, keybuf[k], KEY_MAX)};
      change_t c = {.what = CHANGE_NONE};
      if (op == 6) {
        c.what = CHANGE_SELF + (int)(next(&s) % 3);
        c.victim = (int)(next(&s) % NSLOTS);
        c.len = read_key(&s, bindbuf, BIND_MAX);
        c.key = bindbuf;
      }
      run_match(keys, nkeys, &c);
    } else {
      /* A long key: a short piece repeated, e.g. 1,000 words against
       * bindings with several '#'. */
      char piece[9];
      size_t plen = 1 + read_key(&s, piece, 7);
      piece[plen - 1] = '.';
      size_t reps = 1 + next(&s) * 4, len = 0;
      while (reps-- > 0 && len + plen <= LONGKEY_MAX) {
        memcpy(longkey + len, piece, plen);
        len += plen;
      }
      sg_match_key_t k = {longkey, len};
      change_t c = {.what = CHANGE_NONE};
      run_match(&k, 1, &c);
    }
    model_check();
  }
  sg_matcher_free(&matcher);
  for (int i = 0; i < NSLOTS; i++) FZ_CHECK(slots[i].e.binding == NULL);
  return 0;
}

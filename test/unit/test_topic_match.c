/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/topic_match.h"

static const uint64_t seed[2] = {0x0123456789abcdefull, 0xfedcba9876543210ull};

typedef struct sub {
  sg_matcher_sub_t e;
  char name[16];
  int hits;
} sub_t;

static sub_t *sub_of(sg_matcher_sub_t *e) { return (sub_t *)((char *)e - offsetof(sub_t, e)); }

/* ---------- helpers ---------- */

typedef struct seen {
  char names[64][16];
  int n;
} seen_t;

static void collect_cb(sg_matcher_sub_t *e, void *arg) {
  seen_t *s = arg;
  sub_t *u = sub_of(e);
  u->hits++;
  assert_true(s->n < 64);
  snprintf(s->names[s->n++], 16, "%s", u->name);
}

static int cmp_name(const void *a, const void *b) { return strcmp(a, b); }

/* The sorted, space-separated names of the subscriptions keys[] match. */
static const char *matched(sg_matcher_t *m, const char *const *keys, size_t n) {
  static char out[1024];
  sg_match_key_t k[16];
  assert_true(n <= 16);
  for (size_t i = 0; i < n; i++) k[i] = (sg_match_key_t){keys[i], strlen(keys[i])};
  seen_t s = {.n = 0};
  int r = sg_matcher_match(m, k, n, collect_cb, &s);
  assert_int_equal(r, s.n);
  qsort(s.names, (size_t)s.n, sizeof(s.names[0]), cmp_name);
  out[0] = '\0';
  for (int i = 0; i < s.n; i++) {
    if (i) strcat(out, " ");
    strcat(out, s.names[i]);
  }
  return out;
}

static const char *matched1(sg_matcher_t *m, const char *key) { return matched(m, &key, 1); }

static int add(sg_matcher_t *m, sub_t *s, const char *name, const char *key) {
  snprintf(s->name, sizeof(s->name), "%s", name);
  return sg_matcher_add(m, &s->e, key, strlen(key));
}

/* ---------- topic semantics ---------- */

/* RabbitMQ's rules (rabbit_db_topic_exchange): "" has no words, '.'
 * separates words that may be empty, "*" and "#" are wildcards only as
 * whole binding words. */
static const struct {
  const char *binding, *key;
  int match;
} topic_cases[] = {
  {"#", "", 1}, {"#", "a", 1}, {"#", "a.b", 1}, {"#", ".", 1}, {"#", "a..b", 1},
  {"*", "", 0}, {"*", "a", 1}, {"*", ".", 0}, {"*", "a.b", 0}, {"*", "#", 1}, {"*", "*", 1},
  {"", "", 1}, {"", "a", 0}, {"", ".", 0},
  {".", ".", 1}, {".", "", 0}, {".", "a", 0}, {".", "..", 0},
  {"a..b", "a..b", 1}, {"a..b", "a.b", 0}, {"a..b", "a...b", 0},
  {"a.*.b", "a..b", 1}, {"a.*.b", "a.x.b", 1}, {"a.*.b", "a.b", 0},
  {"#.#", "", 1}, {"#.#", "a", 1}, {"#.#", "a.b.c", 1},
  {"#.#.#", "a.b", 1},
  {"a.#.b", "a.b", 1}, {"a.#.b", "a.x.b", 1}, {"a.#.b", "a.x.y.b", 1}, {"a.#.b", "a.b.b", 1},
  {"a.#.b", "a", 0}, {"a.#.b", "a.b.c", 0}, {"a.#.b", "b", 0},
  {"*.#", "", 0}, {"*.#", "a", 1}, {"*.#", "a.b", 1}, {"*.#", ".", 1},
  {"#.*", "", 0}, {"#.*", "a", 1}, {"#.*", "a.b.c", 1},
  {"*.#.*", "a", 0}, {"*.#.*", "a.b", 1}, {"*.#.*", "a.b.c", 1},
  {"a.#", "a", 1}, {"a.#", "a.", 1}, {"a.#", "a.b.c", 1}, {"a.#", "b", 0}, {"a.#", "", 0},
  {"#.a", "a", 1}, {"#.a", "x.a", 1}, {"#.a", "a.x", 0},
  {".#", "", 0}, {".#", ".", 1}, {".#", ".a.b", 1}, {".#", "x", 0},
  {"#.", "", 0}, {"#.", ".", 1}, {"#.", "a.", 1}, {"#.", "a", 0},
  {"*.*", ".", 1}, {"*.*", "a", 0}, {"*.*", "a.b", 1},
  {"a.*", "a.", 1}, {"a.*", "a", 0},
  /* Wildcard characters inside a word, and in routing keys, are text. */
  {"a*", "a*", 1}, {"a*", "ab", 0}, {"a*", "a", 0},
  {"#b", "#b", 1}, {"#b", "b", 0}, {"#b", "x.b", 0},
  {"a", "*", 0}, {"a", "#", 0}, {"x.#", "x.#", 1}, {"x.*", "x.*", 1},
  {"a", "a", 1}, {"a", "A", 0}, {"a", "a ", 0}, {"a.b", "a.b", 1}, {"a.b", "b.a", 0},
};

static void topic_one_by_one(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(topic_cases) / sizeof(topic_cases[0]); i++) {
    sg_matcher_t m;
    sub_t s = {0};
    assert_int_equal(sg_matcher_init(&m, SG_MATCH_TOPIC, seed), 0);
    assert_int_equal(add(&m, &s, "s", topic_cases[i].binding), 1);
    const char *got = matched1(&m, topic_cases[i].key);
    if (strcmp(got, topic_cases[i].match ? "s" : "") != 0)
      fail_msg("binding '%s' key '%s': want %d", topic_cases[i].binding, topic_cases[i].key,
               topic_cases[i].match);
    sg_matcher_free(&m);
  }
}

/* Overlapping patterns in one matcher, two subscriptions on one of them
 * (two sessions, or one session subscribed twice): every key finds each
 * subscription whose pattern fits, once. */
static void topic_overlapping(void **state) {
  (void)state;
  static const char *const binds[][2] = {
    {"abc", "a.b.c"}, {"abc2", "a.b.c"}, {"asc", "a.*.c"}, {"ah", "a.#"},
    {"hc", "#.c"}, {"sbs", "*.b.*"}, {"h", "#"}, {"abhc", "a.b.#.c"},
    {"sss", "*.*.*"}, {"abch", "a.b.c.#"},
  };
  sub_t subs[10] = {0};
  sg_matcher_t m;
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  for (int i = 0; i < 10; i++)
    assert_int_equal(add(&m, &subs[i], binds[i][0], binds[i][1]), i == 1 ? 0 : 1);
  assert_string_equal(matched1(&m, "a.b.c"), "abc abc2 abch abhc ah asc h hc sbs sss");
  assert_string_equal(matched1(&m, "a.x.c"), "ah asc h hc sss");
  assert_string_equal(matched1(&m, "a.b"), "ah h");
  assert_string_equal(matched1(&m, "a.b.x.c"), "abhc ah h hc");
  assert_string_equal(matched1(&m, "c"), "h hc");
  assert_string_equal(matched1(&m, ""), "h");
  assert_string_equal(matched1(&m, "a.b.c.d"), "abch ah h");
  assert_string_equal(matched1(&m, "x.b.y"), "h sbs sss");
  for (int i = 0; i < 10; i++) assert_true(subs[i].hits <= 8);
  sg_matcher_free(&m);
}

static void star_positions(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[4] = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  add(&m, &s[0], "first", "*.b.c");
  add(&m, &s[1], "middle", "a.*.c");
  add(&m, &s[2], "last", "a.b.*");
  add(&m, &s[3], "all", "*.*.*");
  assert_string_equal(matched1(&m, "a.b.c"), "all first last middle");
  assert_string_equal(matched1(&m, "x.b.c"), "all first");
  assert_string_equal(matched1(&m, "a.x.c"), "all middle");
  assert_string_equal(matched1(&m, "a.b.x"), "all last");
  assert_string_equal(matched1(&m, "..."), "");
  assert_string_equal(matched1(&m, ".."), "all");
  assert_string_equal(matched1(&m, ".b.c"), "all first");
  assert_string_equal(matched1(&m, "a.b"), "");
  assert_string_equal(matched1(&m, "a.b.c.d"), "");
  sg_matcher_free(&m);
}

static void hash_alone(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t h = {0}, h2 = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  assert_int_equal(add(&m, &h, "h", "#"), 1);
  assert_int_equal(add(&m, &h2, "hh", "#.#"), 1);
  const char *keys[] = {"", ".", "a", "a.b", "..", "*", "#", "a.#.b", "x..y."};
  for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
    assert_string_equal(matched1(&m, keys[i]), "h hh");
  char big[600];
  memset(big, '.', 599); /* 600 empty words */
  big[599] = '\0';
  assert_string_equal(matched1(&m, big), "h hh");
  sg_matcher_free(&m);
}

/* Builds n copies of word joined by '.' into out. */
static const char *repeat(char *out, const char *word, int n) {
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (i) strcat(out, ".");
    strcat(out, word);
  }
  return out;
}

static void many_words(void **state) {
  (void)state;
  static char key[4096], bind[4096];
  sg_matcher_t m;
  sub_t s[10] = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  /* The longest binding AMQP carries: 128 one-letter words. */
  assert_int_equal(add(&m, &s[0], "long", repeat(bind, "a", 128)), 1);
  assert_int_equal(strlen(bind), SG_MATCH_KEY_MAX);
  memset(bind, '.', 199); /* 200 empty words */
  bind[199] = '\0';
  assert_int_equal(add(&m, &s[1], "empties", bind), 1);
  add(&m, &s[2], "h", "#");
  add(&m, &s[3], "ah", "a.#");
  add(&m, &s[4], "ha", "#.a");
  add(&m, &s[5], "aha", "a.#.a");
  add(&m, &s[6], "hahah", "#.a.#.a.#");
  add(&m, &s[7], "hbh", "#.b.#");
  add(&m, &s[8], "sh", "*.#");
  add(&m, &s[9], "hahahahah", "#.a.#.a.#.a.#.a.#");
  assert_string_equal(matched1(&m, repeat(key, "a", 128)),
                      "ah aha h ha hahah hahahahah long sh");
  assert_string_equal(matched1(&m, repeat(key, "a", 200)), "ah aha h ha hahah hahahahah sh");
  assert_string_equal(matched1(&m, repeat(key, "a", 127)), "ah aha h ha hahah hahahahah sh");
  assert_string_equal(matched1(&m, bind), "empties h sh");
  /* A miss in the middle of a long key. */
  repeat(key, "a", 200);
  key[200] = 'b';
  assert_string_equal(matched1(&m, key), "ah aha h ha hahah hahahahah hbh sh");
  /* Many '#' against a long key that none of them fits: the walk stays
   * linear in the key (this would take ages if it branched per '#'). */
  repeat(key, "c", 1000);
  assert_string_equal(matched1(&m, key), "h sh");
  sg_matcher_free(&m);
}

static void thousand_keys(void **state) {
  (void)state;
  enum { N = 1000 };
  static sub_t subs[N + 2];
  char key[64], name[16];
  sg_matcher_t m;
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  memset(subs, 0, sizeof(subs));
  for (int i = 0; i < N; i++) {
    snprintf(key, sizeof(key), "user.%d.inbox", i);
    snprintf(name, sizeof(name), "u%d", i);
    assert_int_equal(add(&m, &subs[i], name, key), 1);
  }
  assert_int_equal(add(&m, &subs[N], "star", "user.*.inbox"), 1);
  assert_int_equal(add(&m, &subs[N + 1], "hash", "user.#"), 1);
  assert_int_equal(sg_matcher_keys(&m), N + 2);
  assert_int_equal(sg_matcher_subs(&m), N + 2);
  for (int i = 0; i < N; i++) {
    char want[64];
    snprintf(key, sizeof(key), "user.%d.inbox", i);
    snprintf(want, sizeof(want), "hash star u%d", i);
    assert_string_equal(matched1(&m, key), want);
  }
  assert_string_equal(matched1(&m, "user.1000.inbox"), "hash star");
  assert_string_equal(matched1(&m, "user.1.outbox"), "hash");
  assert_string_equal(matched1(&m, "room.1.inbox"), "");
  for (int i = 0; i < N + 2; i++) assert_int_equal(sg_matcher_remove(&m, &subs[i].e), 1);
  assert_int_equal(sg_matcher_keys(&m), 0);
  assert_int_equal(sg_matcher_subs(&m), 0);
  /* The trie went with its keys (a private field, checked here only). */
  assert_int_equal(m.nedges, 0);
  assert_string_equal(matched1(&m, "user.1.inbox"), "");
  sg_matcher_free(&m);
}

/* ---------- reference counts ---------- */

static void refcounts(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t a1 = {0}, a2 = {0}, b = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  assert_int_equal(add(&m, &a1, "a1", "x.*"), 1); /* first: bind */
  assert_int_equal(add(&m, &a2, "a2", "x.*"), 0);
  assert_int_equal(add(&m, &b, "b", "x.y"), 1);
  assert_int_equal(add(&m, &a1, "a1", "z"), SG_ERR_INVALID); /* already added */
  assert_int_equal(sg_matcher_refs(&m, "x.*", 3), 2);
  assert_int_equal(sg_matcher_refs(&m, "x.y", 3), 1);
  assert_int_equal(sg_matcher_refs(&m, "x", 1), 0);
  assert_int_equal(sg_matcher_refs(&m, "x.z", 3), 0);
  assert_int_equal(sg_matcher_keys(&m), 2);
  assert_int_equal(sg_matcher_subs(&m), 3);
  size_t len = 0;
  assert_string_equal(sg_matcher_sub_key(&a2.e, &len), "x.*");
  assert_int_equal(len, 3);
  assert_string_equal(matched1(&m, "x.y"), "a1 a2 b");
  assert_int_equal(sg_matcher_remove(&m, &a1.e), 0);
  assert_int_equal(sg_matcher_remove(&m, &a2.e), 1); /* last: unbind */
  assert_null(sg_matcher_sub_key(&a2.e, NULL));
  assert_int_equal(sg_matcher_remove(&m, &a2.e), 0); /* not added */
  assert_int_equal(sg_matcher_refs(&m, "x.*", 3), 0);
  assert_string_equal(matched1(&m, "x.y"), "b");
  assert_int_equal(add(&m, &a1, "a1", "x.*"), 1); /* bound again */
  assert_string_equal(matched1(&m, "x.y"), "a1 b");
  /* Keys AMQP cannot bind. */
  char big[SG_MATCH_KEY_MAX + 2];
  memset(big, 'k', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  sub_t c = {0};
  assert_int_equal(add(&m, &c, "c", big), SG_ERR_INVALID);
  assert_null(c.e.binding);
  big[SG_MATCH_KEY_MAX] = '\0';
  assert_int_equal(add(&m, &c, "c", big), 1);
  /* Binary keys: the length counts, not a NUL. */
  sub_t d = {0};
  snprintf(d.name, sizeof(d.name), "d");
  assert_int_equal(sg_matcher_add(&m, &d.e, "x\0y", 3), 1);
  assert_int_equal(sg_matcher_refs(&m, "x\0y", 3), 1);
  assert_int_equal(sg_matcher_refs(&m, "x", 1), 0);
  sg_matcher_free(&m);
  /* Freeing leaves the entries detached. */
  assert_null(a1.e.binding);
  assert_null(b.e.binding);
  assert_int_equal(add(&m, &a1, "a1", "x"), 1);
  sg_matcher_free(&m);
}

static void key_cb(const char *key, size_t len, size_t refs, void *arg) {
  char *out = arg;
  char line[300];
  assert_int_equal(strlen(key), len);
  snprintf(line, sizeof(line), "%s=%zu;", key, refs);
  strcat(out, line);
}

static void each_key(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[3] = {0};
  char out[256] = "";
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  sg_matcher_each_key(&m, key_cb, out);
  assert_string_equal(out, "");
  add(&m, &s[0], "0", "a.#");
  add(&m, &s[1], "1", "a.#");
  add(&m, &s[2], "2", "");
  sg_matcher_each_key(&m, key_cb, out);
  assert_true(strcmp(out, "a.#=2;=1;") == 0 || strcmp(out, "=1;a.#=2;") == 0);
  sg_matcher_free(&m);
}

/* ---------- direct and fanout ---------- */

static void direct(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[6] = {0};
  sg_matcher_init(&m, SG_MATCH_DIRECT, seed);
  assert_int_equal(add(&m, &s[0], "ab", "a.b"), 1);
  assert_int_equal(add(&m, &s[1], "ab2", "a.b"), 0);
  assert_int_equal(add(&m, &s[2], "star", "*"), 1);
  assert_int_equal(add(&m, &s[3], "hash", "#"), 1);
  assert_int_equal(add(&m, &s[4], "empty", ""), 1);
  assert_int_equal(add(&m, &s[5], "a", "a"), 1);
  assert_string_equal(matched1(&m, "a.b"), "ab ab2");
  assert_string_equal(matched1(&m, "a"), "a");
  assert_string_equal(matched1(&m, "b"), "");
  assert_string_equal(matched1(&m, "*"), "star");
  assert_string_equal(matched1(&m, "#"), "hash");
  assert_string_equal(matched1(&m, ""), "empty");
  assert_string_equal(matched1(&m, "a.*"), "");
  const char *cc[] = {"a.b", "a", "a.b", "a", "zzz"};
  assert_string_equal(matched(&m, cc, 5), "a ab ab2");
  assert_int_equal(sg_matcher_refs(&m, "a.b", 3), 2);
  assert_int_equal(sg_matcher_refs(&m, "a", 1), 1);
  for (int i = 0; i < 6; i++) assert_true(sg_matcher_remove(&m, &s[i].e) >= 0);
  assert_int_equal(sg_matcher_keys(&m), 0);
  assert_int_equal(m.nedges, 0);
  sg_matcher_free(&m);
}

static void fanout(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[3] = {0};
  sg_matcher_init(&m, SG_MATCH_FANOUT, seed);
  assert_string_equal(matched1(&m, "x"), "");
  assert_int_equal(add(&m, &s[0], "a", ""), 1);
  assert_int_equal(add(&m, &s[1], "b", "k"), 1);
  assert_int_equal(add(&m, &s[2], "c", "k"), 0);
  assert_string_equal(matched1(&m, ""), "a b c");
  assert_string_equal(matched1(&m, "anything.at.all"), "a b c");
  const char *cc[] = {"k", "k", "", "z"};
  assert_string_equal(matched(&m, cc, 4), "a b c");
  assert_string_equal(matched(&m, cc, 0), "");
  assert_int_equal(sg_matcher_remove(&m, &s[1].e), 0);
  assert_string_equal(matched1(&m, "q"), "a c");
  sg_matcher_free(&m);
}

/* ---------- CC sets ---------- */

static void cc_sets(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[7] = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  add(&m, &s[0], "as", "a.*");
  add(&m, &s[1], "sb", "*.b");
  add(&m, &s[2], "ab", "a.b");
  add(&m, &s[3], "ab2", "a.b");
  add(&m, &s[4], "h", "#");
  add(&m, &s[5], "xb", "x.b");
  add(&m, &s[6], "q", "q");
  const char *keys[] = {"a.b", "a.b", "a.c", "x.b", "a.b"};
  assert_string_equal(matched(&m, keys, 5), "ab ab2 as h sb xb");
  for (int i = 0; i < 7; i++) assert_true(s[i].hits <= 1);
  const char *one[] = {"x.b", "x.b"};
  assert_string_equal(matched(&m, one, 2), "h sb xb");
  const char *none[] = {"z", "z.z.z"};
  assert_string_equal(matched(&m, none, 2), "h");
  assert_string_equal(matched(&m, keys, 0), "");
  sg_matcher_free(&m);
}

/* ---------- changes from inside a match ---------- */

typedef struct mutate {
  sg_matcher_t *m;
  sub_t *victim;     /* removed by the first call */
  sub_t *extra;      /* added by the first call, under extra_key */
  const char *extra_key;
  int self;          /* each call removes its own subscription */
  int rc_victim, rc_extra, rc_nested, calls;
} mutate_t;

static void mutate_cb(sg_matcher_sub_t *e, void *arg) {
  mutate_t *t = arg;
  sub_of(e)->hits++;
  if (t->calls++ == 0) {
    if (t->victim) t->rc_victim = sg_matcher_remove(t->m, &t->victim->e);
    if (t->extra) t->rc_extra = add(t->m, t->extra, "extra", t->extra_key);
    sg_match_key_t k = {"a", 1};
    t->rc_nested = sg_matcher_match(t->m, &k, 1, collect_cb, &(seen_t){.n = 0});
  }
  if (t->self) sg_matcher_remove(t->m, e);
}

static int run_mutate(sg_matcher_t *m, mutate_t *t, const char *key) {
  sg_match_key_t k = {key, strlen(key)};
  t->m = m;
  return sg_matcher_match(m, &k, 1, mutate_cb, t);
}

static void remove_while_matching(void **state) {
  (void)state;
  sg_matcher_t m;
  sub_t s[4] = {0};
  sg_matcher_init(&m, SG_MATCH_TOPIC, seed);
  for (int i = 0; i < 4; i++) {
    char name[4] = {(char)('0' + i), 0};
    add(&m, &s[i], name, i < 3 ? "a" : "#");
  }
  /* Each call removes the subscription it reports: all four reported,
   * both keys unbound, the trie freed after the match. */
  mutate_t t = {.self = 1};
  assert_int_equal(run_mutate(&m, &t, "a"), 4);
  assert_int_equal(t.rc_nested, SG_ERR_INVALID);
  for (int i = 0; i < 4; i++) assert_int_equal(s[i].hits, 1);
  assert_int_equal(sg_matcher_keys(&m), 0);
  assert_int_equal(sg_matcher_subs(&m), 0);
  assert_int_equal(m.nedges, 0);

  /* The first call removes a subscription not reported yet, whichever
   * that is: it is not reported afterwards, and exactly once otherwise. */
  for (int victim = 0; victim < 4; victim++) {
    for (int i = 0; i < 4; i++) {
      s[i].hits = 0;
      char name[4] = {(char)('0' + i), 0};
      add(&m, &s[i], name, i < 3 ? "a" : "#");
    }
    t = (mutate_t){.victim = &s[victim]};
    int calls = run_mutate(&m, &t, "a");
    assert_true(calls == 3 || calls == 4);
    int total = 0;
    for (int i = 0; i < 4; i++) {
      assert_true(s[i].hits <= 1);
      total += s[i].hits;
    }
    assert_int_equal(total, calls);
    assert_int_equal(t.rc_victim, victim == 3 ? 1 : 0);
    assert_null(s[victim].e.binding);
    for (int i = 0; i < 4; i++) sg_matcher_remove(&m, &s[i].e);
    assert_int_equal(m.nedges, 0);
  }

  /* A key's last subscription removed and the key added again inside one
   * match: unbind then bind, and the binding works after the match. */
  sub_t x = {0}, y = {0};
  add(&m, &x, "x", "k.*");
  t = (mutate_t){.victim = &x, .extra = &y, .extra_key = "k.*"};
  assert_int_equal(run_mutate(&m, &t, "k.1"), 1);
  assert_int_equal(t.rc_victim, 1);
  assert_int_equal(t.rc_extra, 1);
  assert_int_equal(sg_matcher_keys(&m), 1);
  assert_string_equal(matched1(&m, "k.2"), "extra");

  /* A subscription added under a new key from inside a match. */
  sub_t z = {0};
  t = (mutate_t){.extra = &z, .extra_key = "k.#.deep.er"};
  assert_int_equal(run_mutate(&m, &t, "k.1"), 1);
  assert_int_equal(t.rc_extra, 1);
  assert_string_equal(matched1(&m, "k.deep.er"), "extra");
  assert_string_equal(matched1(&m, "k.x.deep.er"), "extra");
  assert_int_equal(z.hits, 2);
  assert_string_equal(matched1(&m, "k.x"), "extra");
  assert_int_equal(sg_matcher_keys(&m), 2);
  sg_matcher_free(&m);
}

static void kinds(void **state) {
  (void)state;
  assert_int_equal(sg_match_kind_of("topic"), SG_MATCH_TOPIC);
  assert_int_equal(sg_match_kind_of("direct"), SG_MATCH_DIRECT);
  assert_int_equal(sg_match_kind_of("fanout"), SG_MATCH_FANOUT);
  assert_int_equal(sg_match_kind_of("headers"), SG_ERR_INVALID);
  assert_int_equal(sg_match_kind_of("x-consistent-hash"), SG_ERR_INVALID);
  assert_int_equal(sg_match_kind_of(NULL), SG_ERR_INVALID);
  sg_matcher_t m;
  assert_int_equal(sg_matcher_init(&m, (sg_match_kind_t)0, seed), SG_ERR_INVALID);
}

static void exact_keys(void **state) {
  (void)state;
  static const char *exact[] = {"", "a", "a.b", "a..b", ".", "a.*b", "#a.b", "a.b#", "**", "a.##"};
  static const char *wild[] = {"*", "#", "a.*", "#.a", "a.#.b", "*.*", ".#", "#.", "a..*"};
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
    assert_int_equal(sg_topic_key_exact(exact[i], strlen(exact[i])), 1);
  for (size_t i = 0; i < sizeof(wild) / sizeof(wild[0]); i++)
    assert_int_equal(sg_topic_key_exact(wild[i], strlen(wild[i])), 0);
  /* An exact key matches the routing key equal to it and no other. */
  sg_matcher_t m;
  assert_int_equal(sg_matcher_init(&m, SG_MATCH_TOPIC, seed), 0);
  sub_t s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(add(&m, &s, "x", "a.*b"), 1);
  assert_string_equal(matched1(&m, "a.*b"), "x");
  assert_string_equal(matched1(&m, "a.xb"), "");
  sg_matcher_free(&m);
}

/* Whether binding key pat matches routing key rk, by the matcher. */
static int matches(const char *pat, const char *rk) {
  sg_matcher_t m;
  assert_int_equal(sg_matcher_init(&m, SG_MATCH_TOPIC, seed), 0);
  sub_t s;
  memset(&s, 0, sizeof(s));
  add(&m, &s, "x", pat);
  int r = strcmp(matched1(&m, rk), "x") == 0;
  sg_matcher_free(&m);
  return r;
}

static int covers(const char *pat, const char *key) {
  return sg_topic_covers(pat, strlen(pat), key, strlen(key));
}

/* Which history pattern covers a subscription's key. */
static void covering(void **state) {
  (void)state;
  static const struct {
    const char *pat, *key;
    int covers;
  } cases[] = {
      {"chat.#", "chat.a", 1},      {"chat.#", "chat.*", 1},     {"chat.#", "chat.#", 1},
      {"chat.#", "chat", 1},        {"chat.#", "chat.a.#.b", 1}, {"chat.#", "news.a", 0},
      {"chat.#", "#", 0},           {"chat.#", "*.a", 0},        {"chat.*", "chat.a", 1},
      {"chat.*", "chat.*", 1},      {"chat.*", "chat.#", 0},     {"chat.*", "chat", 0},
      {"chat.*", "chat.a.b", 0},    {"#", "", 1},                {"#", "#", 1},
      {"#", "a.*.#", 1},            {"*.#", "#", 0},             {"*.#", "a.#", 1},
      {"#.#", "#", 1},              {"a.#.z", "a.*.z", 1},       {"a.#.z", "a.#.z", 1},
      {"a.#.z", "a.#", 0},          {"", "", 1},                 {"", "a", 0},
      {"a", "a", 1},                {"a", "*", 0},               {"a..b", "a..b", 1},
      {"a.*.b", "a..b", 1},         {"*", "", 0},                {"a.#", "a.b*", 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (covers(cases[i].pat, cases[i].key) != cases[i].covers)
      fail_msg("covers(%s, %s) != %d", cases[i].pat, cases[i].key, cases[i].covers);
  }
  /* Soundness over every pair of short keys: when pat covers key, each
   * routing key key matches, pat matches. */
  static const char *words[] = {"a", "b", "*", "#"};
  static const char *routing[] = {"", "a", "b", "c", "a.a", "a.b", "b.a", "a.c", "a.b.a",
                                  "a.a.a", "b.b.b", "c.a.b", "a.b.c.a", "a..b", "."};
  char pats[85][8];
  size_t np = 0;
  pats[np++][0] = '\0';
  for (int len = 1; len <= 3; len++) {
    int total = 1;
    for (int i = 0; i < len; i++) total *= 4;
    for (int c = 0; c < total; c++) {
      char *o = pats[np++];
      o[0] = '\0';
      for (int i = 0, x = c; i < len; i++, x /= 4) {
        if (i) strcat(o, ".");
        strcat(o, words[x % 4]);
      }
    }
  }
  size_t checked = 0;
  for (size_t i = 0; i < np; i++)
    for (size_t j = 0; j < np; j++) {
      if (!covers(pats[i], pats[j])) continue;
      checked++;
      for (size_t r = 0; r < sizeof(routing) / sizeof(routing[0]); r++)
        if (matches(pats[j], routing[r]) && !matches(pats[i], routing[r]))
          fail_msg("%s covers %s, but %s matches only the latter", pats[i], pats[j], routing[r]);
    }
  assert_true(checked > np); /* each covers itself, and more */
  /* One pattern against one routing key says what the matcher says, also
   * for routing keys whose words look like wildcards. */
  static const char *more[] = {"*", "#", "a.*", "a.#", "#.a"};
  for (size_t i = 0; i < np; i++) {
    for (size_t r = 0; r < sizeof(routing) / sizeof(routing[0]); r++)
      assert_int_equal(sg_topic_match_one(pats[i], strlen(pats[i]), routing[r], strlen(routing[r])),
                       matches(pats[i], routing[r]));
    for (size_t r = 0; r < sizeof(more) / sizeof(more[0]); r++)
      assert_int_equal(sg_topic_match_one(pats[i], strlen(pats[i]), more[r], strlen(more[r])),
                       matches(pats[i], more[r]));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(exact_keys), cmocka_unit_test(covering),
    cmocka_unit_test(topic_one_by_one), cmocka_unit_test(topic_overlapping),
    cmocka_unit_test(star_positions),   cmocka_unit_test(hash_alone),
    cmocka_unit_test(many_words),       cmocka_unit_test(thousand_keys),
    cmocka_unit_test(refcounts),        cmocka_unit_test(each_key),
    cmocka_unit_test(direct),           cmocka_unit_test(fanout),
    cmocka_unit_test(cc_sets),          cmocka_unit_test(remove_while_matching),
    cmocka_unit_test(kinds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

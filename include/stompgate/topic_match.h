/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_TOPIC_MATCH_H
#define STOMPGATE_TOPIC_MATCH_H

/* Routing in the gateway: the subscriptions of one exchange, keyed by
 * binding key, and the match of a delivery's routing keys against them,
 * with the semantics RabbitMQ gives the exchange's type. No I/O.
 *
 * Topic keys are words separated by '.'. The empty key has no words; every
 * other key has one more word than it has dots, so "a..b" is "a", "", "b"
 * and "." is two empty words. In a binding key the words "*" and "#" are
 * wildcards ("*" one word, "#" zero or more words); inside a longer word
 * ("a*", "#b") they are plain text. So "#" matches every key including "",
 * "*" matches "x" and "" never, "a.#.b" matches "a.b" and "a.x.y.b", "*.#"
 * matches every key of at least one word, and "" matches only "". A
 * routing key's words are always plain text.
 *
 * A topic match walks a trie of binding words: it costs about (words in
 * the key) x (trie nodes alive at once, 1 for keys without wildcards) hash
 * lookups plus one call per match, whatever the number of subscriptions.
 * The walk keeps a set of trie nodes per word and so visits each (node,
 * word) pair at most once: any number of '#' costs at most nodes x words.
 *
 * A subscription is an entry embedded in the caller's own object (recover
 * it with container_of, or use data). It holds one binding key. The
 * matcher counts the subscriptions of each key, so that the caller binds a
 * key at the broker when its first subscription is added and unbinds it
 * when its last goes.
 *
 * A matcher belongs to one thread; nothing here locks. */

#include <stddef.h>
#include <stdint.h>

/* AMQP carries a binding key in a short string: longer keys cannot be
 * bound, so the matcher refuses them. Routing keys to match may be of any
 * length (CC keys are long strings). */
#define SG_MATCH_KEY_MAX 255

typedef enum sg_match_kind {
  SG_MATCH_TOPIC = 1, /* AMQP topic semantics, above */
  SG_MATCH_DIRECT,    /* the whole routing key equals the binding key */
  SG_MATCH_FANOUT,    /* every subscription, whatever the keys */
} sg_match_kind_t;

/* The kind of matcher for an AMQP exchange type ("topic", "direct",
 * "fanout"), or SG_ERR_INVALID for one whose routing the gateway does not
 * reproduce ("headers", plugin types such as "x-consistent-hash"): such an
 * exchange keeps a broker queue per subscription. */
int sg_match_kind_of(const char *exchange_type);

/* 1 when the topic binding key of len bytes has no wildcard word (no
 * word is '*' or '#'): it matches exactly the routing key equal to it,
 * as a direct exchange's binding would. 0 otherwise. */
int sg_topic_key_exact(const char *key, size_t len);

/* 1 when the topic binding key pat[0..plen) covers key[0..klen): every
 * routing key that key matches, pat matches too ("chat.#" covers "chat.a",
 * "chat.*" and "chat.#"; "chat.*" does not cover "chat.#"). Sound, not
 * complete: 1 is always right, and a 0 means the gateway cannot tell. Keys
 * longer than SG_MATCH_KEY_MAX are never covered. */
int sg_topic_covers(const char *pat, size_t plen, const char *key, size_t klen);

/* 1 when the topic binding key pat[0..plen) matches the routing key
 * rk[0..rklen) (whose words are plain text), as a matcher holding pat alone
 * would say. */
int sg_topic_match_one(const char *pat, size_t plen, const char *rk, size_t rklen);

typedef struct sg_match_node sg_match_node_t;
typedef struct sg_match_binding sg_match_binding_t;

/* One subscription. Zero it (or set only data) before its first add; it
 * may be added again after its removal. The fields but data are the
 * matcher's. */
typedef struct sg_matcher_sub {
  struct sg_matcher_sub *next, *prev;
  sg_match_binding_t *binding; /* NULL when not added */
  void *data;                  /* the caller's; never read here */
} sg_matcher_sub_t;

/* One routing key to match: base[0..len), borrowed for the call. */
typedef struct sg_match_key {
  const char *base;
  size_t len;
} sg_match_key_t;

/* Called once per matching subscription; s is the caller's entry. */
typedef void (*sg_matcher_cb)(sg_matcher_sub_t *s, void *arg);

/* Called once per distinct binding key by sg_matcher_each_key; key is
 * NUL-terminated and borrowed for the call. */
typedef void (*sg_matcher_key_cb)(const char *key, size_t len, size_t refs, void *arg);

/* The matcher. Embed it by value; every field is private. */
typedef struct sg_matcher {
  sg_match_kind_t kind;
  uint64_t seed[2];             /* keys the edge hash */
  sg_match_node_t *root;        /* topic: the node of the empty key */
  sg_match_node_t **buckets;    /* edges: (parent node, word) -> child */
  size_t nbuckets, nedges;      /* every node but the root is an edge */
  sg_match_binding_t *bindings; /* every binding key, a doubly-linked list */
  size_t nkeys, nsubs;
  uint64_t stamp;               /* marks nodes and bindings seen in a walk */
  sg_match_node_t **set[2];     /* a walk's node sets, reused */
  size_t setcap;
  sg_match_binding_t **found;   /* a match's distinct bindings, reused */
  size_t foundcap;
  sg_match_binding_t *dead;     /* emptied during a match, freed after it */
  sg_matcher_sub_t *cursor;     /* the next subscription a match reports */
  int busy;                     /* inside sg_matcher_match */
} sg_matcher_t;

/* Makes an empty matcher of the given kind. seed keys the hash of binding
 * words, so that clients choosing keys cannot make chains collide: give
 * each matcher random bytes (tests may give constants). Allocates nothing.
 * 0, or SG_ERR_INVALID for an unknown kind. */
int sg_matcher_init(sg_matcher_t *m, sg_match_kind_t kind, const uint64_t seed[2]);

/* Frees everything the matcher holds. Subscriptions still added are left
 * detached (binding NULL) and are the caller's as always; nothing is
 * called. Not from inside sg_matcher_match's callback. */
void sg_matcher_free(sg_matcher_t *m);

/* Adds s under binding key key[0..len), which is copied. Returns 1 when
 * this is the key's first subscription (time to bind it at the broker), 0
 * when the key already had some, SG_ERR_INVALID when s is already added or
 * len > SG_MATCH_KEY_MAX, SG_ERR_NOMEM (s not added, matcher unchanged).
 * Allowed from inside sg_matcher_match's callback: the running match may
 * or may not report s. */
int sg_matcher_add(sg_matcher_t *m, sg_matcher_sub_t *s, const char *key, size_t len);

/* Removes s. Returns 1 when s was its key's last subscription (time to
 * unbind the key: read it with sg_matcher_sub_key before this call), 0
 * when others remain or s was not added. Allowed from inside
 * sg_matcher_match's callback, for any subscription including the one
 * being reported: a removed subscription is not reported afterwards. */
int sg_matcher_remove(sg_matcher_t *m, sg_matcher_sub_t *s);

/* The binding key s was added with, NUL-terminated, its length in *len
 * when len is not NULL; borrowed until s is removed. NULL when s is not
 * added. */
const char *sg_matcher_sub_key(const sg_matcher_sub_t *s, size_t *len);

/* Matches the routing keys keys[0..nkeys) as one set: a delivery's routing
 * key followed by the keys of its CC header. Calls cb once for each
 * subscription whose binding key matches at least one of them, however
 * many match it and however often a key repeats, as RabbitMQ delivers a
 * message once per queue and each subscription here stands for a queue of
 * its own. Two subscriptions on the same binding key are two calls. For a
 * fanout matcher every subscription matches (when nkeys > 0).
 *
 * The order of the calls is unspecified. cb may add and remove
 * subscriptions (see those functions) but may not call sg_matcher_match or
 * sg_matcher_free on the same matcher. Returns the number of calls made,
 * SG_ERR_NOMEM (no call made), or SG_ERR_INVALID when called from inside a
 * callback of the same matcher (no call made). */
int sg_matcher_match(sg_matcher_t *m, const sg_match_key_t *keys, size_t nkeys,
                     sg_matcher_cb cb, void *arg);

/* Calls cb for each distinct binding key with its subscription count, in
 * no particular order: what to bind again on another broker node. cb may
 * not change the matcher. */
void sg_matcher_each_key(const sg_matcher_t *m, sg_matcher_key_cb cb, void *arg);

/* The number of subscriptions on key[0..len) (0 when it has none). */
size_t sg_matcher_refs(const sg_matcher_t *m, const char *key, size_t len);

/* Distinct binding keys and subscriptions now. */
size_t sg_matcher_keys(const sg_matcher_t *m);
size_t sg_matcher_subs(const sg_matcher_t *m);

#endif

/* SPDX-License-Identifier: MIT */
/* The STOMP session against a fake relay and a fake transport: each test
 * scripts a whole exchange (frames in, relay events) and checks what the
 * client gets and what the relay was asked, with no socket and no broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "relay.h"
#include "session.h"
#include "stompgate/err.h"
#include "stompgate/stomp_codec.h"

/* ---------- the fake transport ---------- */

#define MAX_OUT 64

typedef struct fake_tr {
  sg_transport_t tr;
  char *out[MAX_OUT]; /* messages sent to the client, in order */
  size_t out_len[MAX_OUT];
  size_t nout, next; /* next: the first not yet taken by a test */
  int closed;
  uint16_t close_code;
  size_t backlog;
} fake_tr_t;

static fake_tr_t ft;

static int ft_send(sg_transport_t *t, const void *d, size_t n, int binary) {
  (void)t, (void)binary;
  if (ft.nout == MAX_OUT) return UV_ENOBUFS;
  ft.out[ft.nout] = malloc(n + 1);
  memcpy(ft.out[ft.nout], d, n);
  ft.out[ft.nout][n] = '\0';
  ft.out_len[ft.nout++] = n;
  return 0;
}
static size_t ft_backlog(const sg_transport_t *t) { return (void)t, ft.backlog; }
static void ft_pause(sg_transport_t *t) { t->paused = 1; }
static void ft_resume(sg_transport_t *t) { t->paused = 0; }
static void ft_close(sg_transport_t *t, uint16_t code, const char *reason) {
  (void)t, (void)reason;
  if (ft.closed) return;
  ft.closed = 1;
  ft.close_code = code;
}
static const sg_transport_ops_t ft_ops = {ft_send, ft_backlog, ft_pause, ft_resume, ft_close};

/* ---------- the fake relay ---------- */

typedef struct fake_relay {
  sg_relay_t base;
  int login_calls;
  char vhost[64], user[64];
  int login_answer;          /* what login returns */
  int admit_answer;          /* what admit says for every frame (GO by default) */
  int blocked;               /* SEND and COMMIT wait */
  int subscribe_again;       /* subscribe answers SG_ERR_AGAIN this many times */
  int publishes;
  char last_rk[64], last_body[64];
  int subscribes, unsubscribes, declares, deletes;
  sg_relay_sub_t *subs[16];
  int last_no_ack, last_prefetch;
  int acks;
  uint64_t ack_tag[16];
  int ack_multiple[16], ack_ack[16];
  uint64_t seq, done;        /* operations asked for, and answered */
  int closed;
} fake_relay_t;

static fake_relay_t *fr;

static int fr_login(sg_relay_t *r, const sg_relay_login_t *l, const char **why) {
  (void)r;
  fr->login_calls++;
  snprintf(fr->vhost, sizeof(fr->vhost), "%s", l->vhost);
  snprintf(fr->user, sizeof(fr->user), "%s", l->user);
  *why = "refused by the test";
  return fr->login_answer;
}
static int fr_admit(sg_relay_t *r, const sg_stomp_frame_t *f, int behind, sg_relay_fault_t *why) {
  (void)r, (void)behind, (void)why;
  if (fr->blocked && (f->cmd == SG_STOMP_SEND || f->cmd == SG_STOMP_COMMIT))
    return SG_RELAY_WAIT_BLOCKED;
  return fr->admit_answer;
}
static int fr_declare(sg_relay_t *r, const char *q, const amqp_table_t *a) {
  (void)r, (void)q, (void)a;
  fr->declares++;
  fr->seq++;
  return 0;
}
static int fr_publish(sg_relay_t *r, const char *ex, const char *rk,
                      const amqp_basic_properties_t *p, const void *body, size_t len) {
  (void)r, (void)ex, (void)p;
  fr->publishes++;
  fr->seq++;
  snprintf(fr->last_rk, sizeof(fr->last_rk), "%s", rk);
  snprintf(fr->last_body, sizeof(fr->last_body), "%.*s", (int)len, (const char *)body);
  return 0;
}
static int fr_subscribe(sg_relay_t *r, sg_relay_sub_t *sub, const sg_relay_subreq_t *q,
                        sg_relay_fault_t *why) {
  (void)r, (void)why;
  if (fr->subscribe_again > 0) {
    fr->subscribe_again--;
    return SG_ERR_AGAIN;
  }
  fr->subs[fr->subscribes++ % 16] = sub;
  fr->last_no_ack = q->no_ack;
  fr->last_prefetch = q->prefetch;
  sub->no_ack = q->no_ack != 0;
  fr->seq++;
  return 0;
}
static int fr_unsubscribe(sg_relay_t *r, sg_relay_sub_t *sub, sg_relay_mark_t *done) {
  (void)r;
  fr->unsubscribes++;
  sub->cancelled = 1;
  *done = (sg_relay_mark_t){++fr->seq, 0, 0};
  return 0;
}
static int fr_delete(sg_relay_t *r, const char *q) {
  (void)r, (void)q;
  fr->deletes++;
  fr->seq++;
  return 0;
}
static int fr_ack(sg_relay_t *r, uint64_t tag, int multiple, int ack, int requeue) {
  (void)r, (void)requeue;
  int i = fr->acks++ % 16;
  fr->ack_tag[i] = tag;
  fr->ack_multiple[i] = multiple;
  fr->ack_ack[i] = ack;
  return 0;
}
static void fr_mark(sg_relay_t *r, sg_relay_mark_t *m) {
  (void)r;
  *m = (sg_relay_mark_t){fr->seq, 0, 0};
}
static int fr_reached(sg_relay_t *r, const sg_relay_mark_t *m) {
  (void)r;
  return fr->done >= m->rpc;
}
static void fr_release(sg_relay_t *r, sg_relay_sub_t *sub) { (void)r, (void)sub; }
static int fr_close(sg_relay_t *r) {
  (void)r;
  fr->closed = 1;
  return 1;
}
static void fr_free(sg_relay_t *r) {
  (void)r;
  free(fr);
  fr = NULL;
}

static const sg_relay_ops_t fr_ops = {fr_login,  fr_admit, fr_declare,  fr_publish, fr_subscribe,
                                      fr_unsubscribe, fr_delete, fr_ack, fr_mark, fr_reached,
                                      fr_release, fr_close, fr_free};

static sg_relay_t *fr_create(sg_session_ctx_t *ctx, const sg_relay_cbs_t *cbs, void *owner) {
  (void)ctx;
  fr = calloc(1, sizeof(*fr));
  fr->base.ops = &fr_ops;
  fr->base.cbs = cbs;
  fr->base.owner = owner;
  return &fr->base;
}

static const sg_relay_type_t fake_relay_type = {"fake", 0, NULL, NULL, fr_create};

/* The broker answered everything asked so far. */
static void relay_answers(void) {
  fr->done = fr->seq;
  fr->base.cbs->on_progress_cb(&fr->base);
}

static void relay_delivers(int sub, uint64_t tag, const char *body) {
  sg_amqp_delivery_t d;
  memset(&d, 0, sizeof(d));
  d.delivery_tag = tag;
  d.exchange = amqp_cstring_bytes("");
  d.routing_key = amqp_cstring_bytes("q1");
  d.body = body;
  d.body_len = strlen(body);
  sg_relay_msg_t m = {&d, tag, NULL, NULL, 0};
  fr->base.cbs->on_delivery_cb(&fr->base, fr->subs[sub], &m);
}

/* ---------- driving a session ---------- */

static uv_loop_t loop;
static sg_config_t cfg;
static sg_session_ctx_t ctx;
static sg_stomp_parser_t parser;

static void client_sends(const char *frames, size_t len) {
  ft.tr.last_rx = uv_now(&loop);
  ft.tr.cbs->on_message_cb(&ft.tr, (const uint8_t *)frames, len, 0);
}
#define SEND_FRAMES(lit) client_sends(lit, sizeof(lit) - 1)

/* The next frame the client got (heart-beats skipped), parsed; NULL when
 * there is none. Freed by the next call. */
static sg_stomp_frame_t *got;
static sg_stomp_frame_t *next_frame(void) {
  if (got) sg_stomp_frame_free(got);
  got = NULL;
  while (ft.next < ft.nout) {
    const char *m = ft.out[ft.next];
    size_t n = ft.out_len[ft.next++];
    if (n == 1 && m[0] == '\n') continue;
    size_t used = 0;
    sg_stomp_parser_set_version(&parser, 12);
    int r = sg_stomp_parser_execute(&parser, m, n, &used, &got);
    assert_int_equal(r, 1);
    return got;
  }
  return NULL;
}

static void expect_frame(const char *command) {
  sg_stomp_frame_t *f = next_frame();
  assert_non_null(f);
  assert_string_equal(f->command, command);
}

static const char *header(const char *name) {
  assert_non_null(got);
  return sg_stomp_frame_header(got, name, NULL);
}

static void expect_nothing(void) { assert_null(next_frame()); }

static void expect_error_close(const char *message, uint16_t code) {
  expect_frame("ERROR");
  assert_string_equal(header("message"), message);
  assert_true(ft.closed);
  assert_int_equal(ft.close_code, code);
}

static int setup(void **state) {
  (void)state;
  memset(&ft, 0, sizeof(ft));
  ft.tr.ops = &ft_ops;
  ft.tr.loop = &loop;
  snprintf(ft.tr.peer, sizeof(ft.tr.peer), "test");
  sg_stomp_limits_t lim = {65536, 64, 4096};
  sg_stomp_parser_init(&parser, &lim);
  got = NULL;
  assert_int_equal(sg_session_open(&ft.tr, &ctx, 0), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (got) sg_stomp_frame_free(got);
  got = NULL;
  /* The client goes, the transport closes: the session frees itself. */
  if (!ft.closed) ft.tr.cbs->on_gone_cb(&ft.tr);
  ft.tr.cbs->on_closed_cb(&ft.tr);
  uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(sg_session_count(), 0);
  assert_null(fr);
  for (size_t i = 0; i < ft.nout; i++) free(ft.out[i]);
  sg_stomp_parser_free(&parser);
  return 0;
}

#define CONNECT_12 "CONNECT\naccept-version:1.2\nhost:/\nlogin:alice\npasscode:pw\n\n"

static void connected(void) {
  client_sends(CONNECT_12, sizeof(CONNECT_12)); /* with its NUL */
  assert_int_equal(fr->login_calls, 1);
  fr->base.cbs->on_ready_cb(&fr->base, 0, NULL, NULL);
  expect_frame("CONNECTED");
}

/* ---------- CONNECT ---------- */

static void test_connect(void **state) {
  (void)state;
  client_sends(CONNECT_12, sizeof(CONNECT_12));
  assert_int_equal(fr->login_calls, 1);
  assert_string_equal(fr->user, "alice");
  assert_string_equal(fr->vhost, "/");
  expect_nothing(); /* not before the login is done */
  fr->base.cbs->on_ready_cb(&fr->base, 0, NULL, NULL);
  expect_frame("CONNECTED");
  assert_string_equal(header("version"), "1.2");
  assert_non_null(header("session"));
  assert_false(ft.closed);
}

static void test_connect_refused(void **state) {
  (void)state;
  client_sends(CONNECT_12, sizeof(CONNECT_12));
  fr->base.cbs->on_ready_cb(&fr->base, 403, "ACCESS_REFUSED", NULL);
  expect_error_close("Access refused", 1008);
}

static void test_connect_no_common_version(void **state) {
  (void)state;
  SEND_FRAMES("CONNECT\naccept-version:2.0\n\n\0");
  expect_frame("ERROR");
  assert_string_equal(header("version"), "1.0,1.1,1.2");
  assert_true(ft.closed);
  assert_int_equal(ft.close_code, 1002);
  assert_int_equal(fr->login_calls, 0);
}

static void test_frames_wait_for_login(void **state) {
  (void)state;
  SEND_FRAMES(CONNECT_12 "\0SEND\ndestination:/queue/a\nreceipt:r1\n\nhi\0");
  assert_int_equal(fr->publishes, 0);
  fr->base.cbs->on_ready_cb(&fr->base, 0, NULL, NULL);
  expect_frame("CONNECTED");
  assert_int_equal(fr->publishes, 1);
  assert_string_equal(fr->last_body, "hi");
}

/* ---------- receipts ---------- */

static void test_receipt_after_confirm(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\ndestination:/topic/t\nreceipt:r1\n\none\0"
              "SEND\ndestination:/topic/t\nreceipt:r2\n\ntwo\0");
  assert_int_equal(fr->publishes, 2);
  assert_string_equal(fr->last_rk, "t");
  expect_nothing(); /* not confirmed yet */
  relay_answers();
  expect_frame("RECEIPT");
  assert_string_equal(header("receipt-id"), "r1");
  expect_frame("RECEIPT");
  assert_string_equal(header("receipt-id"), "r2");
}

static void test_disconnect_receipt_then_close(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\ndestination:/topic/t\n\nx\0DISCONNECT\nreceipt:bye\n\n\0");
  expect_nothing();
  assert_false(ft.closed);
  relay_answers();
  expect_frame("RECEIPT");
  assert_string_equal(header("receipt-id"), "bye");
  assert_true(ft.closed);
  assert_int_equal(ft.close_code, 1000);
}

/* ---------- SUBSCRIBE, MESSAGE, ACK ---------- */

static void test_subscribe_auto(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\nreceipt:r\n\n\0");
  assert_int_equal(fr->subscribes, 1);
  assert_true(fr->last_no_ack);
  relay_answers();
  expect_frame("RECEIPT");
  relay_delivers(0, 7, "hello");
  expect_frame("MESSAGE");
  assert_string_equal(header("subscription"), "s1");
  assert_string_equal(header("destination"), "/queue/q1");
  assert_null(header("ack"));
  assert_string_equal(got->body, "hello");
}

static void test_subscribe_client_individual(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\nack:client-individual\n"
              "prefetch-count:5\n\n\0");
  assert_false(fr->last_no_ack);
  assert_int_equal(fr->last_prefetch, 5);
  relay_delivers(0, 1, "a");
  expect_frame("MESSAGE");
  char ack1[256];
  snprintf(ack1, sizeof(ack1), "%s", header("ack"));
  relay_delivers(0, 2, "b");
  expect_frame("MESSAGE");
  char frame[400];
  int n = snprintf(frame, sizeof(frame), "ACK\nid:%s\n\n", header("ack"));
  client_sends(frame, (size_t)n + 1);
  assert_int_equal(fr->acks, 1);
  assert_int_equal(fr->ack_tag[0], 2);
  assert_false(fr->ack_multiple[0]);
  n = snprintf(frame, sizeof(frame), "NACK\nid:%s\n\n", ack1);
  client_sends(frame, (size_t)n + 1);
  assert_int_equal(fr->acks, 2);
  assert_int_equal(fr->ack_tag[1], 1);
  assert_false(fr->ack_ack[1]);
  /* Acked already: unknown now. */
  client_sends(frame, (size_t)n + 1);
  expect_error_close("Unknown message id in NACK", 1002);
}

static void test_subscribe_client_cumulative(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\nack:client\n\n\0");
  relay_delivers(0, 1, "a");
  relay_delivers(0, 2, "b");
  relay_delivers(0, 3, "c");
  expect_frame("MESSAGE");
  expect_frame("MESSAGE");
  char frame[400];
  int n = snprintf(frame, sizeof(frame), "ACK\nid:%s\nreceipt:r\n\n", header("ack"));
  client_sends(frame, (size_t)n + 1);
  assert_int_equal(fr->acks, 1);
  assert_int_equal(fr->ack_tag[0], 2);
  assert_true(fr->ack_multiple[0]); /* 1 and 2 at once */
  expect_frame("MESSAGE");
  relay_answers();
  expect_frame("RECEIPT");
}

static void test_unsubscribe_then_subscribe_again(void **state) {
  (void)state;
  connected();
  /* More cycles than --max-subscriptions: an UNSUBSCRIBE frees its place. */
  for (int i = 0; i < 6; i++) {
    SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\n\n\0"
                "UNSUBSCRIBE\nid:s1\n\n\0");
    relay_answers(); /* the cancel is confirmed: the subscription goes */
  }
  assert_int_equal(fr->subscribes, 6);
  assert_int_equal(fr->unsubscribes, 6);
  expect_nothing();
  assert_false(ft.closed);
}

static void test_subscribe_waits_for_relay(void **state) {
  (void)state;
  connected();
  fr->subscribe_again = 1;
  SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\nreceipt:r1\n\n\0"
              "SEND\ndestination:/queue/q1\n\nafter\0");
  assert_int_equal(fr->subscribes, 0);
  assert_int_equal(fr->publishes, 0); /* it waits behind the SUBSCRIBE */
  fr->base.cbs->on_wake_cb(&fr->base, 0);
  assert_int_equal(fr->subscribes, 1);
  assert_int_equal(fr->publishes, 1);
  relay_answers();
  expect_frame("RECEIPT");
  assert_string_equal(header("receipt-id"), "r1");
}

/* ---------- transactions ---------- */

static void test_transaction_commit(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("BEGIN\ntransaction:t1\n\n\0"
              "SEND\ndestination:/topic/a\ntransaction:t1\n\none\0"
              "SEND\ndestination:/topic/a\ntransaction:t1\n\ntwo\0");
  assert_int_equal(fr->publishes, 0);
  SEND_FRAMES("COMMIT\ntransaction:t1\nreceipt:c\n\n\0");
  assert_int_equal(fr->publishes, 2);
  assert_string_equal(fr->last_body, "two");
  expect_nothing();
  relay_answers();
  expect_frame("RECEIPT");
  assert_string_equal(header("receipt-id"), "c");
}

static void test_transaction_abort(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("BEGIN\ntransaction:t1\n\n\0"
              "SEND\ndestination:/topic/a\ntransaction:t1\n\none\0"
              "ABORT\ntransaction:t1\nreceipt:a\n\n\0");
  assert_int_equal(fr->publishes, 0);
  expect_frame("RECEIPT");
  SEND_FRAMES("COMMIT\ntransaction:t1\n\n\0");
  expect_error_close("Unknown transaction", 1002);
}

/* ---------- the relay fails ---------- */

static void test_relay_lost(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\ndestination:/queue/a\nreceipt:r1\n\nx\0");
  sg_relay_fault_t f = {.kind = SG_RELAY_LOST, .code = 404, .text = "NOT_FOUND",
                        .blame = SG_RELAY_BLAME_RPC, .at = 1};
  fr->base.cbs->on_fault_cb(&fr->base, &f);
  expect_error_close("Not found", 1002);
  assert_string_equal(header("receipt-id"), "r1");
  assert_string_equal(got->body, "NOT_FOUND");
}

static void test_relay_connection_lost(void **state) {
  (void)state;
  connected();
  sg_relay_fault_t f = {.kind = SG_RELAY_LOST, .code = 0, .text = "socket closed"};
  fr->base.cbs->on_fault_cb(&fr->base, &f);
  expect_error_close("Broker connection lost", 1011);
  assert_null(header("receipt-id"));
}

static void test_publish_rejected(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\ndestination:/topic/a\nreceipt:r1\n\nx\0");
  sg_relay_fault_t f = {.kind = SG_RELAY_REJECTED, .tag = 1, .blame = SG_RELAY_BLAME_RPC,
                        .at = 1};
  fr->base.cbs->on_fault_cb(&fr->base, &f);
  expect_error_close("Message rejected by the broker", 1011);
  assert_string_equal(header("receipt-id"), "r1");
}

/* ---------- back-pressure ---------- */

static void test_blocked_pauses_and_resumes(void **state) {
  (void)state;
  connected();
  fr->blocked = 1;
  SEND_FRAMES("SEND\ndestination:/topic/a\n\none\0SUBSCRIBE\nid:s\ndestination:/queue/q\n\n\0");
  assert_int_equal(fr->publishes, 0);
  assert_int_equal(fr->subscribes, 0); /* behind the SEND */
  assert_true(ft.tr.paused);
  fr->blocked = 0;
  fr->base.cbs->on_wake_cb(&fr->base, 1);
  assert_false(ft.tr.paused);
  assert_int_equal(fr->publishes, 1);
  assert_int_equal(fr->subscribes, 1);
}

static void test_slow_consumer_closed(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SUBSCRIBE\nid:s1\ndestination:/queue/q1\n\n\0");
  ft.backlog = cfg.max_outbound_bytes;
  relay_delivers(0, 1, "too much");
  expect_error_close("slow consumer", 1008);
}

/* ---------- bad frames ---------- */

static void test_frame_before_connect(void **state) {
  (void)state;
  SEND_FRAMES("SEND\ndestination:/queue/a\nreceipt:r9\n\nx\0");
  expect_error_close("Expected CONNECT", 1002);
  assert_string_equal(header("receipt-id"), "r9");
}

static void test_unknown_command(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("FROB\n\n\0");
  expect_error_close("Unknown command", 1002);
}

static void test_send_without_destination(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\nreceipt:r\n\nx\0");
  expect_error_close("Missing destination", 1002);
  assert_string_equal(header("receipt-id"), "r");
  assert_int_equal(fr->publishes, 0);
}

static void test_malformed_frame(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("SEND\ndestination:/queue/a\ncontent-length:x\n\nbody\0");
  expect_frame("ERROR");
  assert_true(ft.closed);
  assert_int_equal(ft.close_code, 1002);
}

static void test_after_error_nothing_more(void **state) {
  (void)state;
  connected();
  SEND_FRAMES("FROB\n\n\0SEND\ndestination:/queue/a\n\nx\0");
  expect_error_close("Unknown command", 1002);
  expect_nothing();
  assert_int_equal(fr->publishes, 0);
  assert_true(fr->closed);
}

int main(void) {
  uv_loop_init(&loop);
  char *argv[] = {"test", "--broker=amqp://guest:guest@127.0.0.1:5672/", "--max-subscriptions=4",
                  "--max-outbound-bytes=65536", NULL};
  char *envp[] = {NULL};
  if (sg_config_load(&cfg, 4, argv, envp) != 0) return 1;
  ctx.cfg = &cfg;
  ctx.relay = &fake_relay_type;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_connect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_no_common_version, setup, teardown),
      cmocka_unit_test_setup_teardown(test_frames_wait_for_login, setup, teardown),
      cmocka_unit_test_setup_teardown(test_receipt_after_confirm, setup, teardown),
      cmocka_unit_test_setup_teardown(test_disconnect_receipt_then_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_auto, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_client_individual, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_client_cumulative, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_then_subscribe_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_subscribe_waits_for_relay, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transaction_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_transaction_abort, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relay_lost, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relay_connection_lost, setup, teardown),
      cmocka_unit_test_setup_teardown(test_publish_rejected, setup, teardown),
      cmocka_unit_test_setup_teardown(test_blocked_pauses_and_resumes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_slow_consumer_closed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_frame_before_connect, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_command, setup, teardown),
      cmocka_unit_test_setup_teardown(test_send_without_destination, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_after_error_nothing_more, setup, teardown),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  sg_session_thread_done();
  uv_loop_close(&loop);
  return failed;
}

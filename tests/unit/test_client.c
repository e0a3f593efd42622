/*  libsgmq against a fake broker (a CURVE ROUTER in a thread) that does
    what a real one does only in rare cases, or lies.

    * verify (PROTOCOL.md 11.4): the fake answers REPLAY with a history
      whose hashes are all consistent, but with one other thing wrong in
      each case: a time that goes back, a body that is not in its canonical
      encoding, a REPLAY-END count or head hash that does not match what was
      sent. sgmq_client_verify must say "not intact" and name the message;
      the honest history verifies.
    * pending (10): the fake answers PENDING with 429 a few times (the
      broker's bound on the PENDING work of a turn), then with the page:
      sgmq_client_pending waits and asks again, and gives up with the 429
      once its pauses add up to the client's timeout.
    * dropped frames (3.5): the fake drops a frame of pipelined publishes
      unread and answers ERROR 429 with id 0, as the broker does when one
      connection sends more than it holds: libsgmq sends every unanswered
      publish again (on a new connection), and each is confirmed. Should
      the 429 be lost too (the queue to a client that is not reading is
      full), the fake answers nothing on the first connection: libsgmq,
      waiting with 2 MiB unanswered, goes again on a new one once a whole
      timeout passes without an answer. It goes again after a pause, not at
      once, and a member waiting in sgmq_client_recv goes again too. */
#include "testutil.h"
#include "sgmq_cert.h"
#include "sgmq_client.h"
#include "sgmq_proto.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define S_MESSAGES 5

typedef enum { S_HONEST, S_TIME_BACK, S_NOT_CANONICAL, S_BAD_COUNT, S_BAD_HEAD } s_lie_t;

//  learning-update {alert: 42, held: "session"}: canonical, and the same
//  body with 42 as a uint 8 (valid msgpack, not the canonical form).
static const uint8_t s_canonical [] = {
    0x82, 0xa5, 'a', 'l', 'e', 'r', 't', 0x2a,
    0xa4, 'h', 'e', 'l', 'd', 0xa7, 's', 'e', 's', 's', 'i', 'o', 'n'
};
static const uint8_t s_wide [] = {
    0x82, 0xa5, 'a', 'l', 'e', 'r', 't', 0xcc, 0x2a,
    0xa4, 'h', 'e', 'l', 'd', 0xa7, 's', 'e', 's', 's', 'i', 'o', 'n'
};

typedef struct {
    s_lie_t lie;
    int busy;                           //  PENDINGs answered 429; -1: all
    int pendings;                       //  PENDINGs received
    int drop;                           //  frames of PUBLISHes to drop
    bool deaf;                          //  no answer to PUBLISH until a 2nd HELLO
    int hellos;
    int subscribes;
    bool drop_on_subscribe;             //  the 1st SUBSCRIBE: SUBSCRIBED, then 429 id 0
    int64_t dropped_at, rehello_at;     //  zclock_mono of the 1st drop, the 2nd HELLO
    int publishes;                      //  PUBLISHes received (dropped too)
    uint64_t seq;                       //  the last confirmed
    sgmq_cert_t *cert;
    zsock_t *router;
} s_fake_t;

static void
s_send (s_fake_t *fake, zframe_t *routing, const sgmq_cmd_t *cmds, size_t count)
{
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    for (size_t i = 0; i < count; i++)
        assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
    zframe_send (&routing, fake->router, ZFRAME_MORE | ZFRAME_REUSE);
    size_t size = sgmq_proto_writer_size (writer);
    assert_int_equal (zmq_send (zsock_resolve (fake->router),
                                sgmq_proto_writer_data (writer), size, 0), (int) size);
    sgmq_proto_writer_destroy (&writer);
}

//  The history, with this fake's lie in it.
static void
s_history (s_fake_t *fake, zframe_t *routing, uint64_t id, bool probe)
{
    static const char *groups [] = { "executive" };
    sgmq_cmd_t cmds [S_MESSAGES + 1];
    size_t count = 0;
    uint8_t prev [SGMQ_PROTO_HASH_SIZE] = { 0 };
    for (uint64_t seq = 1; seq <= S_MESSAGES; seq++) {
        sgmq_cmd_t *cmd = &cmds [count];
        memset (cmd, 0, sizeof *cmd);
        cmd->cmd = SGMQ_CMD_REPLAY_ITEM;
        cmd->id = id;
        cmd->u.replay_item.seq = seq;
        cmd->u.replay_item.time = 1700000000000 + seq * 1000;
        if (fake->lie == S_TIME_BACK && seq == 3)
            cmd->u.replay_item.time -= 5000;
        cmd->u.replay_item.kind = SGMQ_KIND_LEARNING_UPDATE;
        cmd->u.replay_item.from = "partnership-office";
        cmd->u.replay_item.from_key = "";
        cmd->u.replay_item.agency = "Local Authority";
        cmd->u.replay_item.groups = (sgmq_strlist_t) { 1, groups };
        bool wide = fake->lie == S_NOT_CANONICAL && seq == 4;
        cmd->u.replay_item.body = wide ? s_wide : s_canonical;
        cmd->u.replay_item.body_size = wide ? sizeof s_wide : sizeof s_canonical;
        //  Hashed as sent, so that the chain itself is consistent.
        sgmq_replay_item_t item = {
            .seq = seq, .time = cmd->u.replay_item.time,
            .kind = SGMQ_KIND_LEARNING_UPDATE, .from = "partnership-office",
            .from_key = "", .groups = { 1, groups },
            .body_bytes = cmd->u.replay_item.body,
            .body_size = cmd->u.replay_item.body_size
        };
        memcpy (cmd->u.replay_item.prev, prev, sizeof prev);
        sgmq_chain_hash (prev, &item, cmd->u.replay_item.hash);
        memcpy (prev, cmd->u.replay_item.hash, sizeof prev);
        if (!probe)
            count++;
    }
    sgmq_cmd_t *end = &cmds [count];
    memset (end, 0, sizeof *end);
    end->cmd = SGMQ_CMD_REPLAY_END;
    end->id = id;
    end->u.replay_end.count = count + (fake->lie == S_BAD_COUNT && !probe);
    end->u.replay_end.head_seq = S_MESSAGES;
    memcpy (end->u.replay_end.head_hash, prev, sizeof prev);
    if (fake->lie == S_BAD_HEAD)
        end->u.replay_end.head_hash [0] ^= 1;
    s_send (fake, routing, cmds, count + 1);
}

//  429 while the fake is busy, then one page of one item.
static void
s_pending (s_fake_t *fake, zframe_t *routing, uint64_t id)
{
    fake->pendings++;
    if (fake->busy) {
        if (fake->busy > 0)
            fake->busy--;
        sgmq_cmd_t busy = { .cmd = SGMQ_CMD_ERROR, .id = id };
        busy.u.error.code = SGMQ_E_BUSY;
        busy.u.error.reason = "the broker has answered all the PENDING it takes at a time";
        s_send (fake, routing, &busy, 1);
        return;
    }
    static sgmq_pending_item_t item = {
        .seq = 1, .time = 1700000000000, .kind = SGMQ_KIND_LEARNING_UPDATE,
        .recipient = "Independent scrutineer", .state = SGMQ_STATE_PENDING,
        .from = "partnership-office"
    };
    sgmq_cmd_t answer = { .cmd = SGMQ_CMD_PENDING_ANSWER, .id = id };
    answer.u.pending_answer.count = 1;
    answer.u.pending_answer.items = &item;
    s_send (fake, routing, &answer, 1);
}

//  A frame's PUBLISHes: dropped as a whole (429 with id 0) while the fake
//  has frames to drop, else each confirmed.
static void
s_publishes (s_fake_t *fake, zframe_t *routing, sgmq_proto_frame_t *frame)
{
    bool drop = fake->drop > 0 || fake->deaf;
    if (fake->drop > 0) {
        fake->drop--;
        if (!fake->dropped_at)
            fake->dropped_at = zclock_mono ();
        sgmq_cmd_t busy = { .cmd = SGMQ_CMD_ERROR, .id = 0 };
        busy.u.error.code = SGMQ_E_BUSY;
        busy.u.error.reason = "frames dropped unread";
        s_send (fake, routing, &busy, 1);
    }
    for (size_t i = 0; i < sgmq_proto_count (frame); i++) {
        const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, NULL);
        if (!cmd || cmd->cmd != SGMQ_CMD_PUBLISH)
            continue;
        fake->publishes++;
        if (drop)
            continue;
        sgmq_cmd_t confirm = { .cmd = SGMQ_CMD_CONFIRM, .id = cmd->id };
        confirm.u.confirm.seq = ++fake->seq;
        confirm.u.confirm.time = 1700000000000;
        s_send (fake, routing, &confirm, 1);
    }
}

static void
s_fake_actor (zsock_t *pipe, void *arg)
{
    s_fake_t *fake = arg;
    zsock_signal (pipe, 0);
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    zpoller_t *poller = zpoller_new (pipe, fake->router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which != fake->router)
            break;                      //  $TERM, or interrupted
        zframe_t *routing = zframe_recv (fake->router);
        zframe_t *data = zframe_recv (fake->router);
        sgmq_proto_error_t error;
        bool decoded = routing && data
                    && sgmq_proto_decode (frame, zframe_data (data), zframe_size (data),
                                          &error) == 0;
        if (decoded)
            s_publishes (fake, routing, frame);
        if (decoded)
            for (size_t i = 0; i < sgmq_proto_count (frame); i++) {
                const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
                if (!cmd)
                    continue;
                if (cmd->cmd == SGMQ_CMD_HELLO) {
                    if (++fake->hellos > 1)
                        fake->deaf = false;
                    if (fake->hellos == 2)
                        fake->rehello_at = zclock_mono ();
                    static const char *roles [] = { "auditor" };
                    sgmq_cmd_t welcome = { .cmd = SGMQ_CMD_WELCOME, .id = cmd->id };
                    welcome.u.welcome.name = "Independent scrutineer";
                    welcome.u.welcome.agency = "Partnership";
                    welcome.u.welcome.broker = "fake";
                    welcome.u.welcome.roles = (sgmq_strlist_t) { 1, roles };
                    welcome.u.welcome.heartbeat = 10000;
                    welcome.u.welcome.max_frame = SGMQ_PROTO_MAX_FRAME;
                    s_send (fake, routing, &welcome, 1);
                }
                else
                if (cmd->cmd == SGMQ_CMD_REPLAY)
                    s_history (fake, routing, cmd->id, cmd->u.replay.from > S_MESSAGES);
                else
                if (cmd->cmd == SGMQ_CMD_PENDING)
                    s_pending (fake, routing, cmd->id);
                else
                if (cmd->cmd == SGMQ_CMD_SUBSCRIBE) {
                    sgmq_cmd_t answers [2] = {
                        { .cmd = SGMQ_CMD_SUBSCRIBED, .id = cmd->id },
                        { .cmd = SGMQ_CMD_ERROR, .id = 0 }
                    };
                    answers [1].u.error.code = SGMQ_E_BUSY;
                    answers [1].u.error.reason = "frames dropped unread";
                    bool drop = fake->drop_on_subscribe && ++fake->subscribes == 1;
                    if (!fake->drop_on_subscribe)
                        fake->subscribes++;
                    if (drop && !fake->dropped_at)
                        fake->dropped_at = zclock_mono ();
                    s_send (fake, routing, answers, drop ? 2 : 1);
                }
                else
                if (cmd->cmd == SGMQ_CMD_PING) {
                    sgmq_cmd_t pong = { .cmd = SGMQ_CMD_PONG, .id = cmd->id };
                    s_send (fake, routing, &pong, 1);
                }
            }
        zframe_destroy (&routing);
        zframe_destroy (&data);
    }
    zpoller_destroy (&poller);
    sgmq_proto_frame_destroy (&frame);
}

//  A fake broker and a client of it, with certificates in a temporary
//  folder.
typedef struct {
    char dir [32];
    char server_path [256], client_path [256], secret_path [300];
    s_fake_t fake;
    sgmq_cert_t *client_cert;
    zactor_t *actor;
    sgmq_client_t *client;
} s_setup_t;

static void
s_setup (s_setup_t *s, s_lie_t lie, int busy, int timeout)
{
    memset (s, 0, sizeof *s);
    snprintf (s->dir, sizeof s->dir, "/tmp/sgmq-client-XXXXXX");
    assert_non_null (mkdtemp (s->dir));
    char error_text [SGMQ_CERT_ERROR_SIZE];
    snprintf (s->server_path, sizeof s->server_path, "%s/broker.cert", s->dir);
    snprintf (s->client_path, sizeof s->client_path, "%s/auditor.cert", s->dir);
    snprintf (s->secret_path, sizeof s->secret_path, "%s_secret", s->client_path);
    s->fake = (s_fake_t) { .lie = lie, .busy = busy, .cert = sgmq_cert_new () };
    s->client_cert = sgmq_cert_new ();
    assert_int_equal (sgmq_cert_save_public (s->fake.cert, s->server_path, true,
                                             error_text), 0);
    assert_int_equal (sgmq_cert_save (s->client_cert, s->client_path, error_text), 0);
    //  A CURVE server with no ZAP handler admits any key: this fake needs
    //  no more.
    s->fake.router = zsock_new (ZMQ_ROUTER);
    assert_int_equal (sgmq_cert_apply_server (s->fake.cert,
                                              zsock_resolve (s->fake.router)), 0);
    int port = zsock_bind (s->fake.router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    s->actor = zactor_new (s_fake_actor, &s->fake);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    sgmq_client_options_t options = {
        .broker = endpoint, .cert = s->secret_path, .server_cert = s->server_path,
        .timeout = timeout
    };
    sgmq_error_t error;
    s->client = sgmq_client_new (&options, &error);
    if (!s->client)
        fail_msg ("no client: %d %s", error.code, error.reason);
}

//  Stop the fake (after which its counts may be read) and clean up.
static void
s_teardown (s_setup_t *s)
{
    sgmq_client_destroy (&s->client);
    zactor_destroy (&s->actor);
    zsock_destroy (&s->fake.router);
    sgmq_cert_destroy (&s->fake.cert);
    sgmq_cert_destroy (&s->client_cert);
    unlink (s->secret_path);
    unlink (s->client_path);
    unlink (s->server_path);
    rmdir (s->dir);
}

//  Verify against a fake broker that tells this lie.
static void
s_verify (s_lie_t lie, sgmq_verify_t *report)
{
    s_setup_t s;
    s_setup (&s, lie, 0, (int) testutil_ms (5000));
    sgmq_error_t error;
    assert_int_equal (sgmq_client_verify (s.client, NULL, report, NULL, NULL, &error), 0);
    s_teardown (&s);
}

static void
test_honest_history_verifies (void **state)
{
    (void) state;
    sgmq_verify_t report;
    s_verify (S_HONEST, &report);
    if (!report.intact)
        fail_msg ("honest history broken: %s", report.reason);
    assert_int_equal (report.count, S_MESSAGES);
    assert_int_equal (report.head_seq, S_MESSAGES);
}

static void
test_each_lie_is_found (void **state)
{
    (void) state;
    const struct {
        s_lie_t lie;
        uint64_t bad_seq;
        const char *says;
    } cases [] = {
        { S_TIME_BACK, 3, "dated before" },
        { S_NOT_CANONICAL, 4, "canonical" },
        { S_BAD_COUNT, S_MESSAGES, "counted" },
        { S_BAD_HEAD, S_MESSAGES, "head hash" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        sgmq_verify_t report;
        s_verify (cases [i].lie, &report);
        printf ("    lie %d: %s\n", (int) cases [i].lie, report.reason);
        assert_false (report.intact);
        assert_int_equal (report.bad_seq, cases [i].bad_seq);
        assert_non_null (strstr (report.reason, cases [i].says));
    }
}

static int
s_count_item (const sgmq_pending_item_t *item, void *arg)
{
    (void) item;
    (*(size_t *) arg)++;
    return 0;
}

static void
test_pending_waits_out_a_busy_broker (void **state)
{
    (void) state;
    //  Three 429s, then the page.
    s_setup_t s;
    s_setup (&s, S_HONEST, 3, (int) testutil_ms (5000));
    size_t items = 0;
    sgmq_error_t error;
    assert_int_equal (sgmq_client_pending (s.client, SGMQ_SCOPE_MINE, false,
                                           s_count_item, &items, &error), 0);
    assert_int_equal (items, 1);
    s_teardown (&s);
    assert_int_equal (s.fake.pendings, 4);
    //  Busy for good: 429 once the pauses add up to the timeout (at 200 ms:
    //  10 + 20 + 40 + 80 + 50, six requests), not for ever.
    int timeout = (int) testutil_ms (200), asks = 1;
    for (int waited = 0, pause = 0; waited < timeout; asks++) {
        pause = pause ? pause * 2 : 10;
        if (pause > timeout - waited)
            pause = timeout - waited;
        waited += pause;
    }
    s_setup (&s, S_HONEST, -1, timeout);
    items = 0;
    assert_int_equal (sgmq_client_pending (s.client, SGMQ_SCOPE_MINE, false,
                                           s_count_item, &items, &error), -1);
    assert_int_equal (error.code, SGMQ_E_BUSY);
    assert_int_equal (items, 0);
    s_teardown (&s);
    assert_int_equal (s.fake.pendings, asks);
}

static void
test_dropped_frames_go_again (void **state)
{
    (void) state;
    s_setup_t s;
    s_setup (&s, S_HONEST, 0, (int) testutil_ms (5000));
    s.fake.drop = 1;
    sgmq_body_t body = { .kind = SGMQ_KIND_LEARNING_UPDATE };
    body.u.learning_update.alert = 42;
    body.u.learning_update.held = SGMQ_HELD_SESSION;
    sgmq_error_t error;
    const char *refs [] = { "u1", "u2", "u3" };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal (sgmq_client_publish_send (s.client, refs [i], &body, &error), 0);
    for (size_t i = 0; i < 3; i++) {
        sgmq_confirm_t confirm;
        assert_int_equal (sgmq_client_publish_wait (s.client, (int) testutil_ms (5000),
                                                    &confirm, &error), 0);
        assert_int_equal (error.code, 0);
        assert_string_equal (confirm.ref, refs [i]);
        assert_int_equal (confirm.seq, i + 1);
    }
    s_teardown (&s);
    assert_int_equal (s.fake.publishes, 6);
    //  Not at once: the broker is overloaded, maybe by someone else.
    assert_true (s.fake.rehello_at - s.fake.dropped_at >= 10);
}

//  A member waiting in sgmq_client_recv when the broker drops a frame of
//  its (acks): it starts again on a new connection (HELLO, SUBSCRIBE).
static void
test_recv_goes_again_after_a_drop (void **state)
{
    (void) state;
    s_setup_t s;
    s_setup (&s, S_HONEST, 0, (int) testutil_ms (5000));
    s.fake.drop_on_subscribe = true;
    sgmq_error_t error;
    assert_int_equal (sgmq_client_subscribe (s.client, 10, NULL, &error), 0);
    const sgmq_delivery_t *delivery;
    assert_int_equal (sgmq_client_recv (s.client, (int) testutil_ms (500), &delivery,
                                        &error), -1);
    assert_int_equal (error.code, SGMQ_CLIENT_E_TIMEOUT);
    s_teardown (&s);
    assert_int_equal (s.fake.hellos, 2);
    assert_int_equal (s.fake.subscribes, 2);
}

//  Over 2 MiB of escalations (6 KiB each) queued while the fake answers
//  none of them on the first connection.
#define S_DEAF_PUBLISHES 400

static void
test_silence_with_much_unanswered_goes_again (void **state)
{
    (void) state;
    s_setup_t s;
    s_setup (&s, S_HONEST, 0, (int) testutil_ms (500));
    s.fake.deaf = true;
    static char summary [SGMQ_PROTO_MAX_TEXT + 1], requested [SGMQ_PROTO_MAX_SHORTTEXT + 1];
    memset (summary, 's', SGMQ_PROTO_MAX_TEXT);
    memset (requested, 'r', SGMQ_PROTO_MAX_SHORTTEXT);
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = "Missing from care";
    body.u.escalation.summary = summary;
    body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
    body.u.escalation.requested = requested;
    body.u.escalation.respond_by = sgmq_time_now () + 7 * 86400000ULL;
    sgmq_error_t error;
    for (int i = 0; i < S_DEAF_PUBLISHES; i++)
        if (sgmq_client_publish_send (s.client, NULL, &body, &error))
            fail_msg ("publish %d not queued: %d %s", i, error.code, error.reason);
    for (int i = 0; i < S_DEAF_PUBLISHES; i++) {
        sgmq_confirm_t confirm;
        assert_int_equal (sgmq_client_publish_wait (s.client, (int) testutil_ms (5000),
                                                    &confirm, &error), 0);
        assert_int_equal (error.code, 0);
    }
    s_teardown (&s);
    assert_int_equal (s.fake.hellos, 2);
    assert_true (s.fake.publishes > S_DEAF_PUBLISHES);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_honest_history_verifies),
        cmocka_unit_test (test_each_lie_is_found),
        cmocka_unit_test (test_pending_waits_out_a_busy_broker),
        cmocka_unit_test (test_dropped_frames_go_again),
        cmocka_unit_test (test_silence_with_much_unanswered_goes_again),
        cmocka_unit_test (test_recv_goes_again_after_a_drop),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}

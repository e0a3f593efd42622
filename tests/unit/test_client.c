/*  libsgmq's verify against a broker that lies (PROTOCOL.md 11.4).

    A fake broker (a CURVE ROUTER in a thread) answers HELLO and REPLAY
    with a history whose hashes are all consistent, but with one other
    thing wrong in each case: a time that goes back, a body that is not in
    its canonical encoding, a REPLAY-END count or head hash that does not
    match what was sent. sgmq_client_verify must say "not intact" and name
    the message; the honest history verifies. */
#include "testutil.h"
#include "sgmq_cert.h"
#include "sgmq_client.h"
#include "sgmq_proto.h"

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
        if (routing && data
        &&  sgmq_proto_decode (frame, zframe_data (data), zframe_size (data), &error) == 0)
            for (size_t i = 0; i < sgmq_proto_count (frame); i++) {
                const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
                if (!cmd)
                    continue;
                if (cmd->cmd == SGMQ_CMD_HELLO) {
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

//  Verify against a fake broker that tells this lie.
static void
s_verify (s_lie_t lie, sgmq_verify_t *report)
{
    char dir [] = "/tmp/sgmq-verify-XXXXXX";
    assert_non_null (mkdtemp (dir));
    char server_path [256], client_path [256], error_text [SGMQ_CERT_ERROR_SIZE];
    snprintf (server_path, sizeof server_path, "%s/broker.cert", dir);
    snprintf (client_path, sizeof client_path, "%s/auditor.cert", dir);
    s_fake_t fake = { .lie = lie, .cert = sgmq_cert_new () };
    sgmq_cert_t *client_cert = sgmq_cert_new ();
    assert_int_equal (sgmq_cert_save_public (fake.cert, server_path, true, error_text), 0);
    assert_int_equal (sgmq_cert_save (client_cert, client_path, error_text), 0);
    //  A CURVE server with no ZAP handler admits any key: this fake needs
    //  no more.
    fake.router = zsock_new (ZMQ_ROUTER);
    assert_int_equal (sgmq_cert_apply_server (fake.cert, zsock_resolve (fake.router)), 0);
    int port = zsock_bind (fake.router, "tcp://127.0.0.1:*");
    assert_true (port > 0);
    zactor_t *actor = zactor_new (s_fake_actor, &fake);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    char secret_path [300];
    snprintf (secret_path, sizeof secret_path, "%s_secret", client_path);
    sgmq_client_options_t options = {
        .broker = endpoint, .cert = secret_path, .server_cert = server_path,
        .timeout = (int) testutil_ms (5000)
    };
    sgmq_error_t error;
    sgmq_client_t *client = sgmq_client_new (&options, &error);
    if (!client)
        fail_msg ("no client: %d %s", error.code, error.reason);
    assert_int_equal (sgmq_client_verify (client, NULL, report, NULL, NULL, &error), 0);
    sgmq_client_destroy (&client);
    zactor_destroy (&actor);
    zsock_destroy (&fake.router);
    sgmq_cert_destroy (&fake.cert);
    sgmq_cert_destroy (&client_cert);
    unlink (secret_path);
    unlink (client_path);
    unlink (server_path);
    rmdir (dir);
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

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_honest_history_verifies),
        cmocka_unit_test (test_each_lie_is_found),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}

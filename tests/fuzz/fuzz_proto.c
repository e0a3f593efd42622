/*  fuzz_proto - libFuzzer target for the wire codec.

    For any input: decode it as a frame and read every command; re-encode
    every command that decoded, decode that again and check it is the same
    command and that encoding it once more gives the same bytes; check that
    every error can be sent back in an ERROR command; decode the input as a
    body of every kind and round-trip what decodes; and check the decoder's
    memory stays within its stated bound. Any failed check aborts, which
    libFuzzer reports as a crash.

    Built with -DSGMQ_FUZZING and -fsanitize=fuzzer when SGMQ_FUZZ=ON.
    Otherwise it is linked with fuzz_replay.c: that is the fuzz_proto_corpus
    test.
*/
#include "fuzz.h"
#include "sgmq_proto.h"
#include "sgmq_proto_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
s_str_same (const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

static bool
s_list_same (sgmq_strlist_t a, sgmq_strlist_t b)
{
    if (a.count != b.count)
        return false;
    for (uint32_t i = 0; i < a.count; i++)
        if (!s_str_same (a.items [i], b.items [i]))
            return false;
    return true;
}

//  A learning item of the report: every recipient, with its groups (the
//  deepest values a frame holds).
static bool
s_learning_same (const sgmq_cmd_t *a, const sgmq_cmd_t *b)
{
    if (a->u.report_learning.seq != b->u.report_learning.seq
        || a->u.report_learning.session_held != b->u.report_learning.session_held
        || a->u.report_learning.reflection_held != b->u.report_learning.reflection_held
        || !s_list_same (a->u.report_learning.groups, b->u.report_learning.groups)
        || a->u.report_learning.recipient_count != b->u.report_learning.recipient_count)
        return false;
    for (uint32_t i = 0; i < a->u.report_learning.recipient_count; i++) {
        const sgmq_recipient_t *x = &a->u.report_learning.recipients [i];
        const sgmq_recipient_t *y = &b->u.report_learning.recipients [i];
        if (!s_str_same (x->name, y->name) || !s_str_same (x->agency, y->agency)
            || !s_list_same (x->groups, y->groups) || x->acked_at != y->acked_at)
            return false;
    }
    return true;
}

//  The fields that matter most, per command; byte-for-byte equality of the
//  re-encoding covers the rest.
static bool
s_cmd_same (const sgmq_cmd_t *a, const sgmq_cmd_t *b)
{
    if (a->cmd != b->cmd || a->id != b->id)
        return false;
    switch (a->cmd) {
        case SGMQ_CMD_HELLO:
            return s_str_same (a->u.hello.client, b->u.hello.client);
        case SGMQ_CMD_WELCOME:
            return s_str_same (a->u.welcome.name, b->u.welcome.name)
                && s_list_same (a->u.welcome.roles, b->u.welcome.roles)
                && s_list_same (a->u.welcome.groups, b->u.welcome.groups)
                && a->u.welcome.heartbeat == b->u.welcome.heartbeat;
        case SGMQ_CMD_PUBLISH:
            return s_str_same (a->u.publish.ref, b->u.publish.ref)
                && a->u.publish.body.kind == b->u.publish.body.kind;
        case SGMQ_CMD_CONFIRM:
            return a->u.confirm.seq == b->u.confirm.seq
                && a->u.confirm.time == b->u.confirm.time
                && a->u.confirm.duplicate == b->u.confirm.duplicate;
        case SGMQ_CMD_SUBSCRIBE:
            return a->u.subscribe.window == b->u.subscribe.window;
        case SGMQ_CMD_DELIVER:
            return a->u.deliver.seq == b->u.deliver.seq
                && s_str_same (a->u.deliver.from, b->u.deliver.from)
                && s_list_same (a->u.deliver.groups, b->u.deliver.groups)
                && a->u.deliver.body.kind == b->u.deliver.body.kind
                && a->u.deliver.body_size == b->u.deliver.body_size
                && memcmp (a->u.deliver.body_bytes, b->u.deliver.body_bytes,
                           a->u.deliver.body_size) == 0;
        case SGMQ_CMD_ACK:
            return a->u.ack.seq == b->u.ack.seq;
        case SGMQ_CMD_PENDING:
            return a->u.pending.scope == b->u.pending.scope
                && a->u.pending.limit == b->u.pending.limit;
        case SGMQ_CMD_PENDING_ANSWER:
            return a->u.pending_answer.count == b->u.pending_answer.count
                && a->u.pending_answer.next == b->u.pending_answer.next;
        case SGMQ_CMD_REPLAY_ITEM:
            return a->u.replay_item.seq == b->u.replay_item.seq
                && a->u.replay_item.body_size == b->u.replay_item.body_size
                && memcmp (a->u.replay_item.hash, b->u.replay_item.hash,
                           SGMQ_PROTO_HASH_SIZE) == 0
                && a->u.replay_item.ack_count == b->u.replay_item.ack_count;
        case SGMQ_CMD_REPLAY_END:
            return a->u.replay_end.head_seq == b->u.replay_end.head_seq
                && a->u.replay_end.has_checkpoint == b->u.replay_end.has_checkpoint;
        case SGMQ_CMD_ERROR:
            return a->u.error.code == b->u.error.code
                && s_str_same (a->u.error.reason, b->u.error.reason)
                && s_str_same (a->u.error.field, b->u.error.field);
        case SGMQ_CMD_REPORT:
            return a->u.report.since == b->u.report.since
                && a->u.report.until == b->u.report.until;
        case SGMQ_CMD_REPORT_ESCALATION:
            return a->u.report_escalation.seq == b->u.report_escalation.seq
                && a->u.report_escalation.status == b->u.report_escalation.status
                && a->u.report_escalation.acked_at == b->u.report_escalation.acked_at
                && s_str_same (a->u.report_escalation.acked_by,
                               b->u.report_escalation.acked_by)
                && a->u.report_escalation.response_seq
                   == b->u.report_escalation.response_seq
                && s_str_same (a->u.report_escalation.response_summary,
                               b->u.report_escalation.response_summary)
                && a->u.report_escalation.overdue_ack
                   == b->u.report_escalation.overdue_ack
                && a->u.report_escalation.overdue_response
                   == b->u.report_escalation.overdue_response
                && a->u.report_escalation.reminders == b->u.report_escalation.reminders;
        case SGMQ_CMD_REPORT_LEARNING:
            return s_learning_same (a, b);
        case SGMQ_CMD_REPORT_END:
            return a->u.report_end.escalations == b->u.report_end.escalations
                && a->u.report_end.learning == b->u.report_end.learning;
        default:
            return true;
    }
}

//  Every error the codec reports must fit in an ERROR the broker sends back.
static void
s_check_echo (sgmq_proto_writer_t *writer, const sgmq_proto_error_t *error)
{
    CHECK (error->code >= SGMQ_E_BAD_REQUEST && error->code <= 599);
    CHECK (error->reason [0] != 0);
    CHECK (strlen (error->field) < sizeof (error->field));
    sgmq_cmd_t answer = { .cmd = SGMQ_CMD_ERROR, .id = error->id };
    answer.u.error.code = (uint32_t) error->code;
    answer.u.error.reason = error->reason;
    answer.u.error.field = error->field [0] ? error->field : NULL;
    sgmq_proto_writer_reset (writer);
    CHECK (sgmq_proto_write (writer, &answer, NULL) == 0);
}

//  encode(decode(x)) decodes, and encodes to the same bytes again.
static void
s_check_command (const sgmq_cmd_t *cmd, sgmq_proto_writer_t *writer,
                 sgmq_proto_frame_t *again)
{
    sgmq_proto_error_t error;
    sgmq_proto_writer_reset (writer);
    CHECK (sgmq_proto_write (writer, cmd, &error) == 0);
    size_t size = sgmq_proto_writer_size (writer);
    uint8_t *first = malloc (size);
    CHECK (first);
    memcpy (first, sgmq_proto_writer_data (writer), size);

    CHECK (sgmq_proto_decode (again, first, size, &error) == 0);
    CHECK (sgmq_proto_count (again) == 1);
    const sgmq_cmd_t *copy = sgmq_proto_cmd (again, 0, &error);
    CHECK (copy);
    CHECK (s_cmd_same (cmd, copy));

    sgmq_proto_writer_reset (writer);
    CHECK (sgmq_proto_write (writer, copy, &error) == 0);
    CHECK (sgmq_proto_writer_size (writer) == size);
    CHECK (memcmp (sgmq_proto_writer_data (writer), first, size) == 0);
    free (first);
}

//  A body that decodes encodes canonically, and the canonical bytes are a
//  fixed point.
static void
s_check_body (const sgmq_body_t *body, sgmq_proto_frame_t *scratch)
{
    sgmq_proto_error_t error;
    CHECK (sgmq_proto_check_body (body, &error) == 0);
    size_t size1, size2;
    uint8_t *one = sgmq_proto_encode_body (body, &size1, &error);
    CHECK (one);
    sgmq_body_t back;
    CHECK (sgmq_proto_decode_body (scratch, body->kind, one, size1, &back, &error) == 0);
    uint8_t *two = sgmq_proto_encode_body (&back, &size2, &error);
    CHECK (two);
    CHECK (size1 == size2 && memcmp (one, two, size1) == 0);
    free (one);
    free (two);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static sgmq_proto_frame_t *again, *scratch, *bodies;
    static sgmq_proto_writer_t *writer, *batch, *echo;
    if (!again) {
        again = sgmq_proto_frame_new ();
        scratch = sgmq_proto_frame_new ();
        bodies = sgmq_proto_frame_new ();
        writer = sgmq_proto_writer_new ();
        batch = sgmq_proto_writer_new ();
        echo = sgmq_proto_writer_new ();
        CHECK (again && scratch && bodies && writer && batch && echo);
    }
    //  A fresh frame, so that its arena shows what this input alone cost.
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    CHECK (frame);
    sgmq_proto_error_t error;
    int rc = sgmq_proto_decode (frame, data, size, &error);
    CHECK (rc == 0 || rc == -2);
    CHECK (sgmq_proto_frame_arena_size (frame) <= sgmq_proto_arena_bound (size));
    if (rc == -2) {
        CHECK (error.index == -1);
        CHECK (sgmq_proto_count (frame) == 0);
        s_check_echo (echo, &error);
    }
    else {
        size_t count = sgmq_proto_count (frame);
        CHECK (count >= 1 && count <= SGMQ_PROTO_MAX_COMMANDS);
        sgmq_proto_writer_reset (batch);
        size_t good = 0;
        for (size_t index = 0; index < count; index++) {
            const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, index, &error);
            if (!cmd) {
                CHECK (error.index == (int) index);
                s_check_echo (echo, &error);
                continue;
            }
            s_check_command (cmd, writer, again);
            if (cmd->cmd == SGMQ_CMD_PUBLISH)
                s_check_body (&cmd->u.publish.body, scratch);
            if (cmd->cmd == SGMQ_CMD_DELIVER)
                s_check_body (&cmd->u.deliver.body, scratch);
            //  Re-encoding never grows a command, so the good ones of a
            //  valid frame always fit in one frame again.
            CHECK (sgmq_proto_write (batch, cmd, NULL) == 0);
            good++;
        }
        if (good) {
            CHECK (sgmq_proto_decode (again, sgmq_proto_writer_data (batch),
                                      sgmq_proto_writer_size (batch), &error) == 0);
            CHECK (sgmq_proto_count (again) == good);
            for (size_t index = 0; index < good; index++)
                CHECK (sgmq_proto_cmd (again, index, &error));
        }
    }
    sgmq_proto_frame_destroy (&frame);

    for (int kind = 1; kind < SGMQ_KIND_COUNT_; kind++) {
        sgmq_body_t body;
        if (sgmq_proto_decode_body (bodies, (sgmq_kind_t) kind, data, size,
                                    &body, &error) == 0) {
            CHECK ((int) body.kind == kind);
            s_check_body (&body, scratch);
        }
        else {
            CHECK (error.index == -1);
            s_check_echo (echo, &error);
        }
        CHECK (sgmq_proto_frame_arena_size (bodies)
               <= sgmq_proto_arena_bound (size) + 2 * SGMQ_PROTO_MAX_FRAME);
    }
    return 0;
}

const fuzz_target_t fuzz_target = { "fuzz_proto", SGMQ_PROTO_MAX_FRAME + 1, NULL };

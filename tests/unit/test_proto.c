/*  test_proto - the wire codec: round trips for every command and kind,
    canonical bodies, and hostile input (each case with the exact status
    code and field it must give).

    Hand-built inputs are written in a small notation that this file turns
    into msgpack, so that a case reads like the frame it is:

        ['SGMQ',1,['ack',7,{'seq':0}]]      arrays, maps, strings, uints
        -3  1.5  nil  true  false           other scalars
        x'00ff'                             a binary (hex)
        str(201)  bin(32)                   a string of 201 'a', 32 bytes 0x11
        'caf\xc3\xa9'                       \xNN, \n, \t, \\, \' escapes
        @c1  @cf0000000000000007            raw bytes, taken as one element
        rep(33,'t')                         33 elements (in an array or map)
*/
#include "testutil.h"
#include "sgmq_proto.h"
#include "sgmq_proto_internal.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  --------------------------------------------------------------------------
//  Notation to msgpack

static const char *mp_value (const char *s, msgpack_packer *pk);

static const char *
mp_ws (const char *s)
{
    while (*s == ' ' || *s == '\n')
        s++;
    return s;
}

static int
mp_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void
mp_raw (msgpack_packer *pk, const void *data, size_t size)
{
    assert_int_equal (pk->callback (pk->data, data, size), 0);
}

//  A quoted string with escapes, into `out` (caller frees); returns the end.
static const char *
mp_quoted (const char *s, char **out, size_t *len)
{
    assert_true (*s == '\'');
    char *text = malloc (strlen (s) + 1);
    assert_non_null (text);
    size_t used = 0;
    for (s++; *s && *s != '\''; s++) {
        if (*s != '\\') {
            text [used++] = *s;
            continue;
        }
        s++;
        if (*s == 'x') {
            text [used++] = (char) (mp_hex (s [1]) * 16 + mp_hex (s [2]));
            s += 2;
        }
        else
            text [used++] = *s == 'n' ? '\n' : *s == 't' ? '\t'
                          : *s == 'r' ? '\r' : *s;
    }
    assert_true (*s == '\'');
    *out = text;
    *len = used;
    return s + 1;
}

//  One element of a container: a value, or key:value in a map.
static const char *
mp_item (const char *s, msgpack_packer *pk, bool map)
{
    s = mp_value (s, pk);
    if (map) {
        s = mp_ws (s);
        assert_true (*s == ':');
        s = mp_value (s + 1, pk);
    }
    return s;
}

static const char *
mp_container (const char *s, msgpack_packer *pk, bool map)
{
    char close = map ? '}' : ']';
    msgpack_sbuffer inner;
    msgpack_packer ipk;
    msgpack_sbuffer_init (&inner);
    msgpack_packer_init (&ipk, &inner, msgpack_sbuffer_write);
    size_t count = 0;
    s = mp_ws (s + 1);
    while (*s != close) {
        assert_true (*s != 0);
        if (strncmp (s, "rep(", 4) == 0) {
            char *end;
            size_t times = strtoul (s + 4, &end, 10);
            assert_true (*end == ',');
            const char *after = end + 1;
            for (size_t index = 0; index < times; index++)
                after = mp_item (end + 1, &ipk, map);
            after = mp_ws (after);
            assert_true (*after == ')');
            s = after + 1;
            count += times;
        }
        else {
            s = mp_item (s, &ipk, map);
            count++;
        }
        s = mp_ws (s);
        if (*s == ',')
            s = mp_ws (s + 1);
    }
    if (map)
        msgpack_pack_map (pk, count);
    else
        msgpack_pack_array (pk, count);
    mp_raw (pk, inner.data, inner.size);
    msgpack_sbuffer_destroy (&inner);
    return s + 1;
}

//  One value.
static const char *
mp_value (const char *s, msgpack_packer *pk)
{
    s = mp_ws (s);
    if (*s == '[' || *s == '{')
        return mp_container (s, pk, *s == '{');
    if (*s == '\'') {
        char *text;
        size_t len;
        s = mp_quoted (s, &text, &len);
        msgpack_pack_str_with_body (pk, text, len);
        free (text);
        return s;
    }
    if (s [0] == 'x' && s [1] == '\'') {
        uint8_t bytes [1024];
        size_t size = 0;
        for (s += 2; *s != '\''; s += 2)
            bytes [size++] = (uint8_t) (mp_hex (s [0]) * 16 + mp_hex (s [1]));
        msgpack_pack_bin_with_body (pk, bytes, size);
        return s + 1;
    }
    if (*s == '@') {
        for (s++; mp_hex (s [0]) >= 0 && mp_hex (s [1]) >= 0; s += 2) {
            uint8_t byte = (uint8_t) (mp_hex (s [0]) * 16 + mp_hex (s [1]));
            mp_raw (pk, &byte, 1);
        }
        return s;
    }
    if (strncmp (s, "str(", 4) == 0 || strncmp (s, "bin(", 4) == 0) {
        bool str = *s == 's';
        char *end;
        size_t size = strtoul (s + 4, &end, 10);
        char *data = malloc (size + 1);
        assert_non_null (data);
        memset (data, str ? 'a' : 0x11, size);
        if (str)
            msgpack_pack_str_with_body (pk, data, size);
        else
            msgpack_pack_bin_with_body (pk, data, size);
        free (data);
        assert_true (*end == ')');
        return end + 1;
    }
    if (strncmp (s, "nil", 3) == 0) {
        msgpack_pack_nil (pk);
        return s + 3;
    }
    if (strncmp (s, "true", 4) == 0) {
        msgpack_pack_true (pk);
        return s + 4;
    }
    if (strncmp (s, "false", 5) == 0) {
        msgpack_pack_false (pk);
        return s + 5;
    }
    char *end;
    if (*s == '-' || (*s >= '0' && *s <= '9')) {
        const char *digits = s;
        while (*s == '-' || (*s >= '0' && *s <= '9'))
            s++;
        if (*s == '.') {
            msgpack_pack_double (pk, strtod (digits, &end));
            return end;
        }
        if (*digits == '-')
            msgpack_pack_int64 (pk, strtoll (digits, &end, 10));
        else
            msgpack_pack_uint64 (pk, strtoull (digits, &end, 10));
        return end;
    }
    fail_msg ("bad notation at: %.20s", s);
    return s;
}

//  Bytes for a notation; caller frees.
static uint8_t *
mp (const char *notation, size_t *size)
{
    msgpack_sbuffer buffer;
    msgpack_packer pk;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    const char *s = notation;
    while (*(s = mp_ws (s)))
        s = mp_value (s, &pk);
    *size = buffer.size;
    if (buffer.size == 0) {
        msgpack_sbuffer_destroy (&buffer);
        return malloc (1);
    }
    return (uint8_t *) msgpack_sbuffer_release (&buffer);
}

//  --------------------------------------------------------------------------
//  Sample values: one of every command and every kind

static const char *const s_groups [] = { "executive", "health-sub-group" };
static const char *const s_one_group [] = { "executive" };
static const char *const s_roles [] = { "member", "auditor" };
static const char *const s_actions [] = {
    "Chair to write to the provider by Friday",
    "Add to the Escalation Tracker\twith a review date"
};
static const char *const s_themes [] = { "neglect", "information sharing" };
static const char *const s_recs [] = {
    "Health visitors attend strategy meetings.\nRecord why if not.",
    "Audit in six months"
};

#define LIST(array) ((sgmq_strlist_t) { sizeof (array) / sizeof (array) [0], array })

static sgmq_body_t
sample_body (sgmq_kind_t kind, bool full)
{
    sgmq_body_t body;
    memset (&body, 0, sizeof (body));
    body.kind = kind;
    switch (kind) {
        case SGMQ_KIND_ESCALATION:
            body.u.escalation.group = "health-sub-group";
            body.u.escalation.title = "Strategy meeting not convened – école référral";
            body.u.escalation.summary = "Referral on 3 May.\nNo strategy meeting\r\nheld.";
            body.u.escalation.severity = SGMQ_SEVERITY_HIGH;
            body.u.escalation.requested = "Executive to ask the provider why";
            body.u.escalation.respond_by = 1700000000000ULL;
            body.u.escalation.case_ref = full ? "CASE-2023-0142" : NULL;
            break;
        case SGMQ_KIND_RESPONSE:
            body.u.response.to = 42;
            body.u.response.decision = "Agreed: the chair writes to the provider";
            body.u.response.summary = "Discussed at the Executive on 12 June";
            if (full)
                body.u.response.action = LIST (s_actions);
            break;
        case SGMQ_KIND_LEARNING:
            body.u.learning.review_type = SGMQ_REVIEW_RAPID_REVIEW;
            body.u.learning.review_ref = "RR-2023-04";
            body.u.learning.title = "Child G: learning from the rapid review";
            body.u.learning.summary = "Themes: neglect, information sharing";
            body.u.learning.theme = LIST (s_themes);
            body.u.learning.recommendation = LIST (s_recs);
            body.u.learning.groups = LIST (s_groups);
            body.u.learning.session_by = full ? 1701000000000ULL : 0;
            body.u.learning.reflection_by = full ? 1730000000000ULL : 0;
            break;
        case SGMQ_KIND_LEARNING_UPDATE:
            body.u.learning_update.alert = 77;
            body.u.learning_update.held = SGMQ_HELD_REFLECTION;
            body.u.learning_update.on = full ? 1702000000000ULL : 0;
            body.u.learning_update.notes = full ? "Well attended" : NULL;
            break;
        case SGMQ_KIND_REMINDER:
            body.u.reminder.reason = SGMQ_REASON_RESPONSE_OVERDUE;
            body.u.reminder.about = 42;
            body.u.reminder.about_kind = SGMQ_KIND_ESCALATION;
            body.u.reminder.title = "Strategy meeting not convened";
            body.u.reminder.group = full ? "health-sub-group" : NULL;
            body.u.reminder.due = 1700000000000ULL;
            body.u.reminder.count = 2;
            break;
        default:
            fail ();
    }
    return body;
}

static sgmq_pending_item_t s_items [2];
static char s_ref64 [SGMQ_PROTO_MAX_NAME + 1];
static sgmq_ack_event_t s_acks [2];
static const char *const s_three_groups [] = {
    "executive", "learning-sub-group", "health-sub-group"
};
//  Recipients of a learning alert: with several groups, with none (no
//  longer admitted), acknowledged and not.
static const sgmq_recipient_t s_recipients [] = {
    { "chair-health", "nhs-trust", { 2, s_groups }, 1701000100000ULL },
    { "dsl-school-7", "education", { 3, s_three_groups }, 0 },
    { "former-member", "", { 0, NULL }, 1701000200000ULL },
    { "lead-police", "police", { 1, s_one_group }, 1701000300000ULL },
};
static uint8_t s_canonical_body [64];
static size_t s_canonical_size;

//  Every command, each kind through PUBLISH and DELIVER; returns the count.
static size_t
sample_cmds (sgmq_cmd_t *cmds, size_t max)
{
    size_t n = 0;
    memset (cmds, 0, max * sizeof (*cmds));
    memset (s_ref64, 'r', SGMQ_PROTO_MAX_NAME);
#define NEXT(which, ident) (cmds [n].cmd = (which), cmds [n].id = (ident), &cmds [n++])

    NEXT (SGMQ_CMD_HELLO, 1)->u.hello.client = "sgmq-cli/0.1";
    NEXT (SGMQ_CMD_HELLO, 2);
    sgmq_cmd_t *c = NEXT (SGMQ_CMD_WELCOME, 1);
    c->u.welcome.name = "chair-health";
    c->u.welcome.agency = "nhs-trust";
    c->u.welcome.roles = LIST (s_roles);
    c->u.welcome.groups = LIST (s_groups);
    c->u.welcome.broker = "thscp-broker";
    c->u.welcome.heartbeat = 5000;
    c->u.welcome.max_frame = SGMQ_PROTO_MAX_FRAME;
    c = NEXT (SGMQ_CMD_WELCOME, 3);
    c->u.welcome.name = "auditor-1";
    c->u.welcome.agency = "partnership";
    c->u.welcome.roles = (sgmq_strlist_t) { 1, s_roles + 1 };
    c->u.welcome.broker = "b";
    c->u.welcome.heartbeat = 1;
    c->u.welcome.max_frame = 1;
    for (int kind = 1; kind < SGMQ_KIND_COUNT_; kind++)
        for (int full = 0; full < 2; full++) {
            c = NEXT (SGMQ_CMD_PUBLISH, 100 + (uint64_t) kind * 2 + (uint64_t) full);
            c->u.publish.ref = full ? s_ref64 : "r";
            c->u.publish.body = sample_body ((sgmq_kind_t) kind, full);
        }
    c = NEXT (SGMQ_CMD_CONFIRM, 100);
    c->u.confirm.seq = 1;
    c->u.confirm.time = 1700000000123ULL;
    c->u.confirm.duplicate = true;
    c = NEXT (SGMQ_CMD_CONFIRM, UINT64_MAX);
    c->u.confirm.seq = UINT64_MAX;
    NEXT (SGMQ_CMD_SUBSCRIBE, 5);
    NEXT (SGMQ_CMD_SUBSCRIBE, 6)->u.subscribe.window = SGMQ_PROTO_MAX_WINDOW;
    NEXT (SGMQ_CMD_SUBSCRIBED, 6)->u.subscribed.backlog = 12345;
    for (int kind = 1; kind < SGMQ_KIND_COUNT_; kind++) {
        c = NEXT (SGMQ_CMD_DELIVER, 0);
        c->u.deliver.seq = 1000 + (uint64_t) kind;
        c->u.deliver.time = 1700000000000ULL + (uint64_t) kind;
        c->u.deliver.from = kind == SGMQ_KIND_REMINDER ? "thscp-broker" : "police-system";
        c->u.deliver.agency = kind == SGMQ_KIND_REMINDER ? "" : "police";
        c->u.deliver.groups = LIST (s_groups);
        c->u.deliver.attempt = (uint32_t) kind;
        c->u.deliver.body = sample_body ((sgmq_kind_t) kind, kind % 2);
    }
    //  A DELIVER that embeds the store's bytes.
    sgmq_body_t stored = sample_body (SGMQ_KIND_LEARNING_UPDATE, true);
    size_t size;
    uint8_t *bytes = sgmq_proto_encode_body (&stored, &size, NULL);
    assert_non_null (bytes);
    assert_true (size <= sizeof (s_canonical_body));
    memcpy (s_canonical_body, bytes, size);
    s_canonical_size = size;
    free (bytes);
    c = NEXT (SGMQ_CMD_DELIVER, 0);
    c->u.deliver.seq = 2000;
    c->u.deliver.time = 1;
    c->u.deliver.from = "x";
    c->u.deliver.agency = "y";
    c->u.deliver.groups = LIST (s_one_group);
    c->u.deliver.attempt = 9;
    c->u.deliver.body.kind = SGMQ_KIND_LEARNING_UPDATE;
    c->u.deliver.body_bytes = s_canonical_body;
    c->u.deliver.body_size = s_canonical_size;

    NEXT (SGMQ_CMD_ACK, 8)->u.ack.seq = 1001;
    c = NEXT (SGMQ_CMD_ACKED, 8);
    c->u.acked.seq = 1001;
    c->u.acked.time = 1700000000999ULL;
    c->u.acked.duplicate = false;
    c = NEXT (SGMQ_CMD_PENDING, 9);
    c->u.pending.scope = SGMQ_SCOPE_MINE;
    c = NEXT (SGMQ_CMD_PENDING, 10);
    c->u.pending.scope = SGMQ_SCOPE_ALL;
    c->u.pending.overdue = true;
    c->u.pending.after = 500;
    c->u.pending.limit = SGMQ_PROTO_MAX_ITEMS;

    memset (s_items, 0, sizeof (s_items));
    s_items [0] = (sgmq_pending_item_t) {
        .seq = 41, .time = 1699000000000ULL, .kind = SGMQ_KIND_ESCALATION,
        .recipient = "chair-exec", .state = SGMQ_STATE_FLAGGED, .attempts = 5,
        .last_delivered = 1699000500000ULL, .deadline = 1699100000000ULL,
        .overdue = true, .from = "police-system", .title = "Strategy meeting"
    };
    s_items [1] = (sgmq_pending_item_t) {
        .seq = 42, .time = 1699000000001ULL, .kind = SGMQ_KIND_LEARNING,
        .recipient = "chair-health", .state = SGMQ_STATE_ACKNOWLEDGED,
        .attempts = 1, .acked_at = 1699000000100ULL, .from = "partnership"
    };
    c = NEXT (SGMQ_CMD_PENDING_ANSWER, 10);
    c->u.pending_answer.count = 2;
    c->u.pending_answer.items = s_items;
    c->u.pending_answer.next = 43;
    NEXT (SGMQ_CMD_PENDING_ANSWER, 11);
    NEXT (SGMQ_CMD_REPLAY, 12);
    c = NEXT (SGMQ_CMD_REPLAY, 13);
    c->u.replay.from = 1;
    c->u.replay.to = 99;
    c->u.replay.since = 1600000000000ULL;
    c->u.replay.until = 1800000000000ULL;
    c->u.replay.group = "executive";
    c->u.replay.kind = SGMQ_KIND_RESPONSE;

    s_acks [0] = (sgmq_ack_event_t) {
        "chair-exec", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", 1700000001000ULL };
    s_acks [1] = (sgmq_ack_event_t) {
        "chair-health", "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", 1700000002000ULL };
    c = NEXT (SGMQ_CMD_REPLAY_ITEM, 13);
    c->u.replay_item.seq = 7;
    c->u.replay_item.time = 1700000000000ULL;
    c->u.replay_item.kind = SGMQ_KIND_LEARNING_UPDATE;
    c->u.replay_item.from = "partnership";
    c->u.replay_item.from_key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    c->u.replay_item.agency = "partnership";
    c->u.replay_item.groups = LIST (s_groups);
    c->u.replay_item.body = s_canonical_body;
    c->u.replay_item.body_size = s_canonical_size;
    memset (c->u.replay_item.hash, 0xab, SGMQ_PROTO_HASH_SIZE);
    memset (c->u.replay_item.prev, 0xcd, SGMQ_PROTO_HASH_SIZE);
    c->u.replay_item.ack_count = 2;
    c->u.replay_item.acks = s_acks;
    c = NEXT (SGMQ_CMD_REPLAY_ITEM, 13);
    c->u.replay_item.seq = 8;
    c->u.replay_item.kind = SGMQ_KIND_REMINDER;
    c->u.replay_item.from = "thscp-broker";
    c->u.replay_item.from_key = "";
    c->u.replay_item.agency = "";
    c->u.replay_item.groups = LIST (s_one_group);
    c->u.replay_item.body = s_canonical_body;
    c->u.replay_item.body_size = 1;
    c = NEXT (SGMQ_CMD_REPLAY_END, 13);
    c->u.replay_end.count = 2;
    c->u.replay_end.head_seq = 8;
    memset (c->u.replay_end.head_hash, 0x5a, SGMQ_PROTO_HASH_SIZE);
    c->u.replay_end.has_checkpoint = true;
    c->u.replay_end.checkpoint.seq = 8;
    c->u.replay_end.checkpoint.time = 1700000009000ULL;
    memset (c->u.replay_end.checkpoint.hash, 0x5a, SGMQ_PROTO_HASH_SIZE);
    memset (c->u.replay_end.checkpoint.signature, 0x77, SGMQ_PROTO_SIG_SIZE);
    NEXT (SGMQ_CMD_REPLAY_END, 14);
    NEXT (SGMQ_CMD_PING, 20);
    NEXT (SGMQ_CMD_PONG, 20);
    NEXT (SGMQ_CMD_BYE, 21);
    c = NEXT (SGMQ_CMD_ERROR, 22);
    c->u.error.code = SGMQ_E_FORBIDDEN;
    c->u.error.reason = "publish: role publisher required\n(you are member)";
    c->u.error.field = "kind";
    c = NEXT (SGMQ_CMD_ERROR, 0);
    c->u.error.code = 599;
    c->u.error.reason = "x";

    //  The Escalation Tracker report: an open range and a closed one; an
    //  escalation just raised (optional fields absent) and one responded
    //  to late (all present); a learning alert with several recipients and
    //  one with none.
    NEXT (SGMQ_CMD_REPORT, 30);
    c = NEXT (SGMQ_CMD_REPORT, 31);
    c->u.report.since = 1696118400000ULL;
    c->u.report.until = 1698796799999ULL;
    c = NEXT (SGMQ_CMD_REPORT_ESCALATION, 31);
    c->u.report_escalation.seq = 1;
    c->u.report_escalation.time = 0;
    c->u.report_escalation.from = "h";
    c->u.report_escalation.agency = "";
    c->u.report_escalation.group = "g";
    c->u.report_escalation.title = "T";
    c->u.report_escalation.severity = SGMQ_SEVERITY_LOW;
    c->u.report_escalation.status = SGMQ_ESC_RAISED;
    c = NEXT (SGMQ_CMD_REPORT_ESCALATION, UINT64_MAX);
    c->u.report_escalation.seq = 41;
    c->u.report_escalation.time = 1696200000000ULL;
    c->u.report_escalation.from = "health-system";
    c->u.report_escalation.agency = "nhs-trust";
    c->u.report_escalation.group = "health-sub-group";
    c->u.report_escalation.title = "Strategy meeting not convened – école référral";
    c->u.report_escalation.severity = SGMQ_SEVERITY_CRITICAL;
    c->u.report_escalation.respond_by = 1697000000000ULL;
    c->u.report_escalation.ack_by = 1696800000000ULL;
    c->u.report_escalation.status = SGMQ_ESC_RESPONDED;
    c->u.report_escalation.acked_at = 1696900000000ULL;
    c->u.report_escalation.acked_by = "chair-exec";
    c->u.report_escalation.responded_at = 1697100000000ULL;
    c->u.report_escalation.response_seq = UINT64_MAX;
    c->u.report_escalation.decision = "Agreed: the chair writes to the provider";
    c->u.report_escalation.response_summary = "Discussed on 12 June.\nActions:\r\n\tone";
    c->u.report_escalation.overdue_ack = true;
    c->u.report_escalation.overdue_response = true;
    c->u.report_escalation.reminders = UINT32_MAX;
    c = NEXT (SGMQ_CMD_REPORT_LEARNING, 31);
    c->u.report_learning.seq = 77;
    c->u.report_learning.time = 1696300000000ULL;
    c->u.report_learning.from = "partnership-office";
    c->u.report_learning.agency = "partnership";
    c->u.report_learning.title = "Child G: learning from the rapid review";
    c->u.report_learning.review_ref = "RR-2023-04";
    c->u.report_learning.review_type = SGMQ_REVIEW_RAPID_REVIEW;
    c->u.report_learning.groups = LIST (s_three_groups);
    c->u.report_learning.session_by = 1697500000000ULL;
    c->u.report_learning.session_held = 1697400000000ULL;
    c->u.report_learning.reflection_by = 1727900000000ULL;
    c->u.report_learning.recipient_count =
        (uint32_t) (sizeof (s_recipients) / sizeof (s_recipients [0]));
    c->u.report_learning.recipients = s_recipients;
    c = NEXT (SGMQ_CMD_REPORT_LEARNING, 31);
    c->u.report_learning.seq = 78;
    c->u.report_learning.from = "p";
    c->u.report_learning.agency = "";
    c->u.report_learning.title = "T";
    c->u.report_learning.review_ref = "R";
    c->u.report_learning.review_type = SGMQ_REVIEW_OTHER;
    c->u.report_learning.groups = LIST (s_one_group);
    c->u.report_learning.reflection_held = 1;
    c = NEXT (SGMQ_CMD_REPORT_END, 31);
    c->u.report_end.escalations = 2;
    c->u.report_end.learning = 2;
    NEXT (SGMQ_CMD_REPORT_END, 30);
#undef NEXT
    assert_true (n <= max);
    return n;
}

//  --------------------------------------------------------------------------
//  Deep comparison (written out, not table-driven, so it checks the tables)

static void
check_str (const char *expected, const char *actual)
{
    if (!expected)
        assert_null (actual);
    else {
        assert_non_null (actual);
        assert_string_equal (expected, actual);
    }
}

static void
check_list (sgmq_strlist_t expected, sgmq_strlist_t actual)
{
    assert_int_equal (expected.count, actual.count);
    for (uint32_t index = 0; index < expected.count; index++)
        check_str (expected.items [index], actual.items [index]);
}

static void
check_body (const sgmq_body_t *e, const sgmq_body_t *a)
{
    assert_int_equal (e->kind, a->kind);
    switch (e->kind) {
        case SGMQ_KIND_ESCALATION:
            check_str (e->u.escalation.group, a->u.escalation.group);
            check_str (e->u.escalation.title, a->u.escalation.title);
            check_str (e->u.escalation.summary, a->u.escalation.summary);
            assert_int_equal (e->u.escalation.severity, a->u.escalation.severity);
            check_str (e->u.escalation.requested, a->u.escalation.requested);
            assert_true (e->u.escalation.respond_by == a->u.escalation.respond_by);
            check_str (e->u.escalation.case_ref, a->u.escalation.case_ref);
            break;
        case SGMQ_KIND_RESPONSE:
            assert_true (e->u.response.to == a->u.response.to);
            check_str (e->u.response.decision, a->u.response.decision);
            check_str (e->u.response.summary, a->u.response.summary);
            check_list (e->u.response.action, a->u.response.action);
            break;
        case SGMQ_KIND_LEARNING:
            assert_int_equal (e->u.learning.review_type, a->u.learning.review_type);
            check_str (e->u.learning.review_ref, a->u.learning.review_ref);
            check_str (e->u.learning.title, a->u.learning.title);
            check_str (e->u.learning.summary, a->u.learning.summary);
            check_list (e->u.learning.theme, a->u.learning.theme);
            check_list (e->u.learning.recommendation, a->u.learning.recommendation);
            check_list (e->u.learning.groups, a->u.learning.groups);
            assert_true (e->u.learning.session_by == a->u.learning.session_by);
            assert_true (e->u.learning.reflection_by == a->u.learning.reflection_by);
            break;
        case SGMQ_KIND_LEARNING_UPDATE:
            assert_true (e->u.learning_update.alert == a->u.learning_update.alert);
            assert_int_equal (e->u.learning_update.held, a->u.learning_update.held);
            assert_true (e->u.learning_update.on == a->u.learning_update.on);
            check_str (e->u.learning_update.notes, a->u.learning_update.notes);
            break;
        case SGMQ_KIND_REMINDER:
            assert_int_equal (e->u.reminder.reason, a->u.reminder.reason);
            assert_true (e->u.reminder.about == a->u.reminder.about);
            assert_int_equal (e->u.reminder.about_kind, a->u.reminder.about_kind);
            check_str (e->u.reminder.title, a->u.reminder.title);
            check_str (e->u.reminder.group, a->u.reminder.group);
            assert_true (e->u.reminder.due == a->u.reminder.due);
            assert_int_equal (e->u.reminder.count, a->u.reminder.count);
            break;
        default:
            fail ();
    }
}

static void
check_cmd (const sgmq_cmd_t *e, const sgmq_cmd_t *a)
{
    assert_int_equal (e->cmd, a->cmd);
    assert_true (e->id == a->id);
    switch (e->cmd) {
        case SGMQ_CMD_HELLO:
            check_str (e->u.hello.client, a->u.hello.client);
            break;
        case SGMQ_CMD_WELCOME:
            check_str (e->u.welcome.name, a->u.welcome.name);
            check_str (e->u.welcome.agency, a->u.welcome.agency);
            check_str (e->u.welcome.broker, a->u.welcome.broker);
            check_list (e->u.welcome.roles, a->u.welcome.roles);
            check_list (e->u.welcome.groups, a->u.welcome.groups);
            assert_int_equal (e->u.welcome.heartbeat, a->u.welcome.heartbeat);
            assert_int_equal (e->u.welcome.max_frame, a->u.welcome.max_frame);
            break;
        case SGMQ_CMD_PUBLISH:
            check_str (e->u.publish.ref, a->u.publish.ref);
            check_body (&e->u.publish.body, &a->u.publish.body);
            break;
        case SGMQ_CMD_CONFIRM:
            assert_true (e->u.confirm.seq == a->u.confirm.seq);
            assert_true (e->u.confirm.time == a->u.confirm.time);
            assert_int_equal (e->u.confirm.duplicate, a->u.confirm.duplicate);
            break;
        case SGMQ_CMD_SUBSCRIBE:
            assert_int_equal (e->u.subscribe.window, a->u.subscribe.window);
            break;
        case SGMQ_CMD_SUBSCRIBED:
            assert_true (e->u.subscribed.backlog == a->u.subscribed.backlog);
            break;
        case SGMQ_CMD_DELIVER: {
            assert_true (e->u.deliver.seq == a->u.deliver.seq);
            assert_true (e->u.deliver.time == a->u.deliver.time);
            check_str (e->u.deliver.from, a->u.deliver.from);
            check_str (e->u.deliver.agency, a->u.deliver.agency);
            check_list (e->u.deliver.groups, a->u.deliver.groups);
            assert_int_equal (e->u.deliver.attempt, a->u.deliver.attempt);
            //  The decoded side always has both the body and its bytes; the
            //  bytes of an encoded struct are its canonical encoding.
            assert_non_null (a->u.deliver.body_bytes);
            if (e->u.deliver.body_bytes) {
                assert_int_equal (e->u.deliver.body_size, a->u.deliver.body_size);
                assert_memory_equal (e->u.deliver.body_bytes,
                                     a->u.deliver.body_bytes,
                                     e->u.deliver.body_size);
                assert_int_equal (e->u.deliver.body.kind, a->u.deliver.body.kind);
            }
            else {
                check_body (&e->u.deliver.body, &a->u.deliver.body);
                size_t size;
                uint8_t *bytes = sgmq_proto_encode_body (&e->u.deliver.body,
                                                         &size, NULL);
                assert_non_null (bytes);
                assert_int_equal (size, a->u.deliver.body_size);
                assert_memory_equal (bytes, a->u.deliver.body_bytes, size);
                free (bytes);
            }
            break;
        }
        case SGMQ_CMD_ACK:
            assert_true (e->u.ack.seq == a->u.ack.seq);
            break;
        case SGMQ_CMD_ACKED:
            assert_true (e->u.acked.seq == a->u.acked.seq);
            assert_true (e->u.acked.time == a->u.acked.time);
            assert_int_equal (e->u.acked.duplicate, a->u.acked.duplicate);
            break;
        case SGMQ_CMD_PENDING:
            assert_int_equal (e->u.pending.scope, a->u.pending.scope);
            assert_int_equal (e->u.pending.overdue, a->u.pending.overdue);
            assert_true (e->u.pending.after == a->u.pending.after);
            assert_int_equal (e->u.pending.limit, a->u.pending.limit);
            break;
        case SGMQ_CMD_PENDING_ANSWER:
            assert_int_equal (e->u.pending_answer.count, a->u.pending_answer.count);
            assert_true (e->u.pending_answer.next == a->u.pending_answer.next);
            for (uint32_t i = 0; i < e->u.pending_answer.count; i++) {
                const sgmq_pending_item_t *x = &e->u.pending_answer.items [i];
                const sgmq_pending_item_t *y = &a->u.pending_answer.items [i];
                assert_true (x->seq == y->seq);
                assert_true (x->time == y->time);
                assert_int_equal (x->kind, y->kind);
                check_str (x->recipient, y->recipient);
                assert_int_equal (x->state, y->state);
                assert_int_equal (x->attempts, y->attempts);
                assert_true (x->last_delivered == y->last_delivered);
                assert_true (x->acked_at == y->acked_at);
                assert_true (x->deadline == y->deadline);
                assert_int_equal (x->overdue, y->overdue);
                check_str (x->from, y->from);
                check_str (x->title, y->title);
            }
            break;
        case SGMQ_CMD_REPLAY:
            assert_true (e->u.replay.from == a->u.replay.from);
            assert_true (e->u.replay.to == a->u.replay.to);
            assert_true (e->u.replay.since == a->u.replay.since);
            assert_true (e->u.replay.until == a->u.replay.until);
            check_str (e->u.replay.group, a->u.replay.group);
            assert_int_equal (e->u.replay.kind, a->u.replay.kind);
            break;
        case SGMQ_CMD_REPLAY_ITEM:
            assert_true (e->u.replay_item.seq == a->u.replay_item.seq);
            assert_true (e->u.replay_item.time == a->u.replay_item.time);
            assert_int_equal (e->u.replay_item.kind, a->u.replay_item.kind);
            check_str (e->u.replay_item.from, a->u.replay_item.from);
            check_str (e->u.replay_item.from_key, a->u.replay_item.from_key);
            check_str (e->u.replay_item.agency, a->u.replay_item.agency);
            check_list (e->u.replay_item.groups, a->u.replay_item.groups);
            assert_int_equal (e->u.replay_item.body_size, a->u.replay_item.body_size);
            assert_memory_equal (e->u.replay_item.body, a->u.replay_item.body,
                                 e->u.replay_item.body_size);
            assert_memory_equal (e->u.replay_item.hash, a->u.replay_item.hash,
                                 SGMQ_PROTO_HASH_SIZE);
            assert_memory_equal (e->u.replay_item.prev, a->u.replay_item.prev,
                                 SGMQ_PROTO_HASH_SIZE);
            assert_int_equal (e->u.replay_item.ack_count, a->u.replay_item.ack_count);
            for (uint32_t i = 0; i < e->u.replay_item.ack_count; i++) {
                check_str (e->u.replay_item.acks [i].by, a->u.replay_item.acks [i].by);
                check_str (e->u.replay_item.acks [i].key, a->u.replay_item.acks [i].key);
                assert_true (e->u.replay_item.acks [i].time
                             == a->u.replay_item.acks [i].time);
            }
            break;
        case SGMQ_CMD_REPLAY_END:
            assert_true (e->u.replay_end.count == a->u.replay_end.count);
            assert_true (e->u.replay_end.head_seq == a->u.replay_end.head_seq);
            assert_memory_equal (e->u.replay_end.head_hash, a->u.replay_end.head_hash,
                                 SGMQ_PROTO_HASH_SIZE);
            assert_int_equal (e->u.replay_end.has_checkpoint,
                              a->u.replay_end.has_checkpoint);
            if (e->u.replay_end.has_checkpoint) {
                const sgmq_checkpoint_t *x = &e->u.replay_end.checkpoint;
                const sgmq_checkpoint_t *y = &a->u.replay_end.checkpoint;
                assert_true (x->seq == y->seq);
                assert_true (x->time == y->time);
                assert_memory_equal (x->hash, y->hash, SGMQ_PROTO_HASH_SIZE);
                assert_memory_equal (x->signature, y->signature, SGMQ_PROTO_SIG_SIZE);
            }
            break;
        case SGMQ_CMD_PING:
        case SGMQ_CMD_PONG:
        case SGMQ_CMD_BYE:
            break;
        case SGMQ_CMD_ERROR:
            assert_int_equal (e->u.error.code, a->u.error.code);
            check_str (e->u.error.reason, a->u.error.reason);
            check_str (e->u.error.field, a->u.error.field);
            break;
        case SGMQ_CMD_REPORT:
            assert_true (e->u.report.since == a->u.report.since);
            assert_true (e->u.report.until == a->u.report.until);
            break;
        case SGMQ_CMD_REPORT_ESCALATION: {
            //  Anonymous structs have no type to point with: name them.
#define X_ (&e->u.report_escalation)
#define Y_ (&a->u.report_escalation)
            assert_true (X_->seq == Y_->seq);
            assert_true (X_->time == Y_->time);
            check_str (X_->from, Y_->from);
            check_str (X_->agency, Y_->agency);
            check_str (X_->group, Y_->group);
            check_str (X_->title, Y_->title);
            assert_int_equal (X_->severity, Y_->severity);
            assert_true (X_->respond_by == Y_->respond_by);
            assert_true (X_->ack_by == Y_->ack_by);
            assert_int_equal (X_->status, Y_->status);
            assert_true (X_->acked_at == Y_->acked_at);
            check_str (X_->acked_by, Y_->acked_by);
            assert_true (X_->responded_at == Y_->responded_at);
            assert_true (X_->response_seq == Y_->response_seq);
            check_str (X_->decision, Y_->decision);
            check_str (X_->response_summary, Y_->response_summary);
            assert_int_equal (X_->overdue_ack, Y_->overdue_ack);
            assert_int_equal (X_->overdue_response, Y_->overdue_response);
            assert_int_equal (X_->reminders, Y_->reminders);
#undef X_
#undef Y_
            break;
        }
        case SGMQ_CMD_REPORT_LEARNING: {
#define X_ (&e->u.report_learning)
#define Y_ (&a->u.report_learning)
            assert_true (X_->seq == Y_->seq);
            assert_true (X_->time == Y_->time);
            check_str (X_->from, Y_->from);
            check_str (X_->agency, Y_->agency);
            check_str (X_->title, Y_->title);
            check_str (X_->review_ref, Y_->review_ref);
            assert_int_equal (X_->review_type, Y_->review_type);
            check_list (X_->groups, Y_->groups);
            assert_true (X_->session_by == Y_->session_by);
            assert_true (X_->session_held == Y_->session_held);
            assert_true (X_->reflection_by == Y_->reflection_by);
            assert_true (X_->reflection_held == Y_->reflection_held);
            assert_int_equal (X_->recipient_count, Y_->recipient_count);
            for (uint32_t i = 0; i < X_->recipient_count; i++) {
                check_str (X_->recipients [i].name, Y_->recipients [i].name);
                check_str (X_->recipients [i].agency, Y_->recipients [i].agency);
                check_list (X_->recipients [i].groups, Y_->recipients [i].groups);
                assert_true (X_->recipients [i].acked_at == Y_->recipients [i].acked_at);
            }
#undef X_
#undef Y_
            break;
        }
        case SGMQ_CMD_REPORT_END:
            assert_true (e->u.report_end.escalations == a->u.report_end.escalations);
            assert_true (e->u.report_end.learning == a->u.report_end.learning);
            break;
        default:
            fail ();
    }
}

//  --------------------------------------------------------------------------
//  Names

static void
test_names (void **state)
{
    (void) state;
    static const int codes [] = {
        200, 400, 401, 403, 404, 405, 406, 409, 410, 411, 412, 413, 414, 415,
        416, 420, 421, 422, 423, 424, 425, 426, 427, 429, 500, 503, 507
    };
    for (size_t i = 0; i < sizeof (codes) / sizeof (codes [0]); i++) {
        const char *name = sgmq_proto_status_name (codes [i]);
        assert_non_null (name);
        assert_string_not_equal (name, "unknown-status");
    }
    assert_string_equal (sgmq_proto_status_name (SGMQ_E_STORAGE_FULL), "storage-full");
    assert_string_equal (sgmq_proto_status_name (SGMQ_E_FORBIDDEN), "forbidden");
    assert_string_equal (sgmq_proto_status_name (123), "unknown-status");

    struct {
        const char *(*name) (int);
        int (*parse) (const char *, size_t);
        int count;
    } enums [] = {
        { sgmq_proto_cmd_name, sgmq_proto_cmd_parse, SGMQ_CMD_COUNT_ },
        { sgmq_proto_kind_name, sgmq_proto_kind_parse, SGMQ_KIND_COUNT_ },
        { sgmq_proto_severity_name, sgmq_proto_severity_parse, SGMQ_SEVERITY_COUNT_ },
        { sgmq_proto_review_name, sgmq_proto_review_parse, SGMQ_REVIEW_COUNT_ },
        { sgmq_proto_held_name, sgmq_proto_held_parse, SGMQ_HELD_COUNT_ },
        { sgmq_proto_reason_name, sgmq_proto_reason_parse, SGMQ_REASON_COUNT_ },
        { sgmq_proto_scope_name, sgmq_proto_scope_parse, SGMQ_SCOPE_COUNT_ },
        { sgmq_proto_state_name, sgmq_proto_state_parse, SGMQ_STATE_COUNT_ },
        { sgmq_proto_esc_status_name, sgmq_proto_esc_status_parse, SGMQ_ESC_COUNT_ },
    };
    for (size_t e = 0; e < sizeof (enums) / sizeof (enums [0]); e++) {
        assert_null (enums [e].name (0));
        assert_null (enums [e].name (enums [e].count));
        assert_null (enums [e].name (-1));
        for (int value = 1; value < enums [e].count; value++) {
            const char *name = enums [e].name (value);
            assert_non_null (name);
            assert_int_equal (enums [e].parse (name, strlen (name)), value);
            //  Exact match only: no prefixes ("subscribe" is a name of its
            //  own, but not "subscribed" cut short to mean it).
            assert_int_not_equal (enums [e].parse (name, strlen (name) - 1), value);
        }
        assert_int_equal (enums [e].parse ("nonsense", 8), 0);
        assert_int_equal (enums [e].parse (NULL, 0), 0);
    }
    assert_string_equal (sgmq_proto_cmd_name (SGMQ_CMD_PENDING_ANSWER), "pending-answer");
    assert_string_equal (sgmq_proto_kind_name (SGMQ_KIND_LEARNING_UPDATE), "learning-update");
    assert_string_equal (sgmq_proto_reason_name (SGMQ_REASON_SESSION_DUE),
                         "learning-session-due");
    assert_int_equal (sgmq_proto_kind_parse ("ESCALATION", 10), 0);
    assert_string_equal (sgmq_proto_cmd_name (SGMQ_CMD_REPORT), "report");
    assert_string_equal (sgmq_proto_cmd_name (SGMQ_CMD_REPORT_ESCALATION),
                         "report-escalation");
    assert_string_equal (sgmq_proto_cmd_name (SGMQ_CMD_REPORT_LEARNING),
                         "report-learning");
    assert_string_equal (sgmq_proto_cmd_name (SGMQ_CMD_REPORT_END), "report-end");
    assert_string_equal (sgmq_proto_esc_status_name (SGMQ_ESC_RAISED), "raised");
    assert_string_equal (sgmq_proto_esc_status_name (SGMQ_ESC_ACKNOWLEDGED),
                         "acknowledged");
    assert_int_equal (sgmq_proto_esc_status_parse ("responded", 9), SGMQ_ESC_RESPONDED);
}

//  Commands added within version 1 go after ERROR: no earlier value moves
//  (code compiled against the old header keeps working).
_Static_assert (SGMQ_CMD_HELLO == 1 && SGMQ_CMD_REPLAY_END == 14
                && SGMQ_CMD_ERROR == 18, "existing command values moved");
_Static_assert (SGMQ_CMD_REPORT == 19 && SGMQ_CMD_REPORT_ESCALATION == 20
                && SGMQ_CMD_REPORT_LEARNING == 21 && SGMQ_CMD_REPORT_END == 22
                && SGMQ_CMD_COUNT_ == 23, "report commands out of place");

//  --------------------------------------------------------------------------
//  Round trips

#define MAX_SAMPLES 64

static void
test_roundtrip_each (void **state)
{
    (void) state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    assert_non_null (writer);
    assert_non_null (frame);
    bool seen [SGMQ_CMD_COUNT_] = { false };
    for (size_t i = 0; i < n; i++) {
        sgmq_proto_error_t error;
        sgmq_proto_writer_reset (writer);
        int rc = sgmq_proto_write (writer, &cmds [i], &error);
        if (rc != 0)
            fail_msg ("sample %zu (%s): %s", i, sgmq_proto_cmd_name (cmds [i].cmd),
                      error.reason);
        assert_int_equal (sgmq_proto_writer_count (writer), 1);
        rc = sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                sgmq_proto_writer_size (writer), &error);
        if (rc != 0)
            fail_msg ("sample %zu: %s", i, error.reason);
        assert_int_equal (error.code, SGMQ_OK);
        assert_int_equal (sgmq_proto_count (frame), 1);
        const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, 0, &error);
        if (!cmd)
            fail_msg ("sample %zu: %s", i, error.reason);
        check_cmd (&cmds [i], cmd);
        seen [cmds [i].cmd] = true;
    }
    for (int which = 1; which < SGMQ_CMD_COUNT_; which++)
        assert_true (seen [which]);
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
    assert_null (writer);
    assert_null (frame);
    sgmq_proto_writer_destroy (&writer);     //  NULL-safe
    sgmq_proto_frame_destroy (&frame);
}

//  A writer that trusts body bytes writes exactly what a checking one
//  writes; only release builds skip the check, so a bad body still fails
//  where assertions are on.
static void
test_trusted_bodies (void **state)
{
    (void) state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *checking = sgmq_proto_writer_new ();
    sgmq_proto_writer_t *trusting = sgmq_proto_writer_new ();
    sgmq_proto_writer_trust_bodies (trusting);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal (sgmq_proto_write (checking, &cmds [i], NULL), 0);
        assert_int_equal (sgmq_proto_write (trusting, &cmds [i], NULL), 0);
    }
    assert_int_equal (sgmq_proto_writer_size (trusting),
                      sgmq_proto_writer_size (checking));
    assert_memory_equal (sgmq_proto_writer_data (trusting),
                         sgmq_proto_writer_data (checking),
                         sgmq_proto_writer_size (checking));

    sgmq_cmd_t bad = { .cmd = SGMQ_CMD_DELIVER };
    bad.u.deliver.seq = bad.u.deliver.attempt = 1;
    bad.u.deliver.from = bad.u.deliver.agency = "x";
    bad.u.deliver.groups = LIST (s_one_group);
    bad.u.deliver.body.kind = SGMQ_KIND_ESCALATION;
    bad.u.deliver.body_bytes = (const uint8_t *) "\x81\xa1x\x01";
    bad.u.deliver.body_size = 4;
    sgmq_proto_writer_reset (checking);
    sgmq_proto_writer_reset (trusting);
    assert_int_equal (sgmq_proto_write (checking, &bad, NULL), -2);
#ifdef NDEBUG
    assert_int_equal (sgmq_proto_write (trusting, &bad, NULL), 0);
#else
    assert_int_equal (sgmq_proto_write (trusting, &bad, NULL), -2);
#endif
    sgmq_proto_writer_destroy (&checking);
    sgmq_proto_writer_destroy (&trusting);
}

static void
test_roundtrip_batch (void **state)
{
    (void) state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (size_t i = 0; i < n; i++)
        assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
    assert_int_equal (sgmq_proto_writer_count (writer), n);
    sgmq_proto_error_t error;
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         sgmq_proto_writer_size (writer), &error), 0);
    assert_int_equal (sgmq_proto_count (frame), n);
    for (size_t i = 0; i < n; i++) {
        const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
        assert_non_null (cmd);
        check_cmd (&cmds [i], cmd);
    }
    //  Past the end: NULL with an error, never a crash.
    assert_null (sgmq_proto_cmd (frame, n, &error));
    assert_int_equal (error.code, SGMQ_E_INTERNAL);

    //  The input may go as soon as decode returns: decode from a copy,
    //  scribble over the copy, and the commands still read the same.
    size_t size = sgmq_proto_writer_size (writer);
    uint8_t *copy = malloc (size);
    memcpy (copy, sgmq_proto_writer_data (writer), size);
    assert_int_equal (sgmq_proto_decode (frame, copy, size, NULL), 0);
    memset (copy, 0xc1, size);
    free (copy);
    for (size_t i = 0; i < n; i++)
        check_cmd (&cmds [i], sgmq_proto_cmd (frame, i, NULL));

    //  A failed decode leaves no commands behind.
    assert_int_equal (sgmq_proto_decode (frame, (const uint8_t *) "\xc1", 1, NULL), -2);
    assert_int_equal (sgmq_proto_count (frame), 0);
    assert_null (sgmq_proto_cmd (frame, 0, NULL));
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  Decoders must accept what other msgpack libraries send: keys in any
//  order, integers in wider forms than needed, signed forms for
//  non-negative values, str8 for short strings.
static void
test_decode_liberal_forms (void **state)
{
    (void) state;
    size_t size;
    uint8_t *data = mp ("['SGMQ',@cd0001,"
                        "['publish',@cf0000000000000007,"
                        "{'body':{'held':'session','alert':@d30000000000000009},"
                        "'kind':'learning-update','ref':@d90172}],"
                        "['confirm',@d000,{'duplicate':false,'time':@ce00000001,'seq':@d17fff}]]",
                        &size);
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_proto_error_t error;
    assert_int_equal (sgmq_proto_decode (frame, data, size, &error), 0);
    const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, 0, &error);
    assert_non_null (cmd);
    assert_int_equal (cmd->cmd, SGMQ_CMD_PUBLISH);
    assert_true (cmd->id == 7);
    assert_string_equal (cmd->u.publish.ref, "r");
    assert_int_equal (cmd->u.publish.body.kind, SGMQ_KIND_LEARNING_UPDATE);
    assert_true (cmd->u.publish.body.u.learning_update.alert == 9);
    assert_int_equal (cmd->u.publish.body.u.learning_update.held, SGMQ_HELD_SESSION);
    cmd = sgmq_proto_cmd (frame, 1, &error);
    assert_non_null (cmd);
    assert_true (cmd->u.confirm.seq == 0x7fff);
    assert_true (cmd->u.confirm.time == 1);
    free (data);
    sgmq_proto_frame_destroy (&frame);
}

//  --------------------------------------------------------------------------
//  Canonical bodies

static void
test_canonical_body (void **state)
{
    (void) state;
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (int kind = 1; kind < SGMQ_KIND_COUNT_; kind++)
        for (int full = 0; full < 2; full++) {
            sgmq_body_t body = sample_body ((sgmq_kind_t) kind, full);
            sgmq_proto_error_t error;
            assert_int_equal (sgmq_proto_check_body (&body, &error), 0);
            size_t size1, size2, size3;
            uint8_t *one = sgmq_proto_encode_body (&body, &size1, &error);
            uint8_t *two = sgmq_proto_encode_body (&body, &size2, &error);
            assert_non_null (one);
            assert_non_null (two);
            assert_int_equal (size1, size2);
            assert_memory_equal (one, two, size1);

            sgmq_body_t back;
            assert_int_equal (sgmq_proto_decode_body (frame, (sgmq_kind_t) kind,
                                                      one, size1, &back, &error), 0);
            check_body (&body, &back);
            uint8_t *three = sgmq_proto_encode_body (&back, &size3, &error);
            assert_non_null (three);
            assert_int_equal (size1, size3);
            assert_memory_equal (one, three, size1);
            //  The wrong kind for these bytes is refused, never misread.
            int other = kind % (SGMQ_KIND_COUNT_ - 1) + 1;
            assert_int_equal (sgmq_proto_decode_body (frame, (sgmq_kind_t) other,
                                                      one, size1, &back, &error), -2);
            free (one);
            free (two);
            free (three);
        }

    //  The exact bytes: fields in PROTOCOL.md order, absent optionals left
    //  out, shortest integers.
    sgmq_body_t body = sample_body (SGMQ_KIND_LEARNING_UPDATE, false);
    body.u.learning_update.alert = 300;
    size_t size;
    uint8_t *bytes = sgmq_proto_encode_body (&body, &size, NULL);
    static const uint8_t expected [] = {
        0x82, 0xa5, 'a', 'l', 'e', 'r', 't', 0xcd, 0x01, 0x2c,
        0xa4, 'h', 'e', 'l', 'd', 0xaa, 'r', 'e', 'f', 'l', 'e', 'c', 't', 'i',
        'o', 'n'
    };
    assert_int_equal (size, sizeof (expected));
    assert_memory_equal (bytes, expected, size);
    free (bytes);

    //  Keys in another order and wide integers decode to the same body,
    //  which re-encodes to the canonical bytes.
    size_t odd_size;
    uint8_t *odd = mp ("{'held':'reflection','alert':@cf000000000000012c}", &odd_size);
    sgmq_body_t back;
    assert_int_equal (sgmq_proto_decode_body (frame, SGMQ_KIND_LEARNING_UPDATE,
                                              odd, odd_size, &back, NULL), 0);
    bytes = sgmq_proto_encode_body (&back, &size, NULL);
    assert_int_equal (size, sizeof (expected));
    assert_memory_equal (bytes, expected, size);
    free (bytes);
    free (odd);
    sgmq_proto_frame_destroy (&frame);
}

static void
test_body_errors (void **state)
{
    (void) state;
    sgmq_proto_error_t error;
    size_t size;
    sgmq_body_t body = sample_body (SGMQ_KIND_ESCALATION, true);
    body.u.escalation.title = NULL;
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_MISSING_FIELD);
    assert_string_equal (error.field, "body.title");
    assert_null (sgmq_proto_encode_body (&body, &size, &error));
    assert_int_equal (error.code, SGMQ_E_MISSING_FIELD);

    body = sample_body (SGMQ_KIND_ESCALATION, true);
    body.u.escalation.severity = SGMQ_SEVERITY_COUNT_;
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.severity");

    body = sample_body (SGMQ_KIND_LEARNING, true);
    static const char *const bad_themes [] = { "ok", "tab\there" };
    body.u.learning.theme = LIST (bad_themes);
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.theme[1]");

    body = sample_body (SGMQ_KIND_LEARNING, true);
    body.u.learning.theme.count = 0;
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.theme");

    body = sample_body (SGMQ_KIND_LEARNING, true);
    body.u.learning.theme.count = SGMQ_PROTO_MAX_LIST + 1;
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_TOO_MANY);

    body = sample_body (SGMQ_KIND_REMINDER, true);
    body.u.reminder.count = 0;
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.count");

    memset (&body, 0, sizeof (body));
    assert_int_equal (sgmq_proto_check_body (&body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_UNKNOWN_KIND);

    //  decode_body: truncated, trailing, not a map, bad kind.
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    uint8_t *bytes = mp ("{'alert':1,'held':'session'}", &size);
    for (size_t cut = 0; cut < size; cut++) {
        assert_int_equal (sgmq_proto_decode_body (frame, SGMQ_KIND_LEARNING_UPDATE,
                                                  bytes, cut, &body, &error), -2);
        assert_int_equal (error.code, SGMQ_E_TRUNCATED);
    }
    free (bytes);
    bytes = mp ("{'alert':1,'held':'session'} 0", &size);
    assert_int_equal (sgmq_proto_decode_body (frame, SGMQ_KIND_LEARNING_UPDATE,
                                              bytes, size, &body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_TRAILING);
    free (bytes);
    bytes = mp ("['alert',1]", &size);
    assert_int_equal (sgmq_proto_decode_body (frame, SGMQ_KIND_LEARNING_UPDATE,
                                              bytes, size, &body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_WRONG_TYPE);
    assert_string_equal (error.field, "body");
    assert_int_equal (sgmq_proto_decode_body (frame, (sgmq_kind_t) 99,
                                              bytes, size, &body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_UNKNOWN_KIND);
    free (bytes);
    bytes = mp ("{'alert':1,'held':'session','on':'today'}", &size);
    assert_int_equal (sgmq_proto_decode_body (frame, SGMQ_KIND_LEARNING_UPDATE,
                                              bytes, size, &body, &error), -2);
    assert_int_equal (error.code, SGMQ_E_WRONG_TYPE);
    assert_string_equal (error.field, "body.on");
    free (bytes);
    sgmq_proto_frame_destroy (&frame);
}

//  --------------------------------------------------------------------------
//  Hostile input, table-driven

typedef enum { OK, FRAME, CMD } level_t;

typedef struct {
    const char *input;
    level_t level;              //  OK: decodes; FRAME: -2; CMD: command 0 fails
    int code;
    const char *field;
} bad_case_t;

#define F(commands) "['SGMQ',1," commands "]"
#define PUB(kind, body) F ("['publish',7,{'ref':'r-1','kind':'" kind "','body':" body "}]")
#define ESC(group, title, summary, severity, requested, respond_by, extra) \
    "{'group':" group ",'title':" title ",'summary':" summary \
    ",'severity':" severity ",'requested':" requested ",'respond_by':" respond_by \
    extra "}"
#define ESC_WITH_TITLE(title) \
    PUB ("escalation", ESC ("'health'", title, "'Sum'", "'high'", "'Chase'", "1", ""))
#define ESC_WITH_SUMMARY(summary) \
    PUB ("escalation", ESC ("'health'", "'T'", summary, "'high'", "'Chase'", "1", ""))
#define LEARN(theme, recommendation, groups) \
    PUB ("learning", "{'review_type':'cspr','review_ref':'CSPR-7','title':'T'," \
         "'summary':'S','theme':" theme ",'recommendation':" recommendation \
         ",'groups':" groups "}")
#define ITEM(extra) "{'seq':1,'time':2,'kind':'response','recipient':'r'," \
    "'attempts':0,'overdue':false,'from':'f'" extra "}"
#define REPLAY_ITEM(hash, acks) \
    F ("['replay-item',3,{'seq':1,'time':2,'kind':'learning','from':'p'," \
       "'from_key':'','agency':'','groups':['g'],'body':x'80','hash':" hash \
       ",'prev':bin(32),'acks':" acks "}]")

#define REP_ESC(seq, status, overdue_ack, reminders, extra) \
    F ("['report-escalation',4,{'seq':" seq ",'time':2,'from':'f','agency':''," \
       "'group':'g','title':'T','severity':'high','respond_by':3,'ack_by':4," \
       "'status':" status ",'overdue_ack':" overdue_ack ",'overdue_response':false," \
       "'reminders':" reminders extra "}]")
#define REP_ESC_WITH(extra) REP_ESC ("1", "'raised'", "false", "0", extra)
#define REP_ESC_ALL \
    ",'acked_at':5,'acked_by':'chair','responded_at':6,'response_seq':7," \
    "'decision':'d','response_summary':'two\\nlines'"
#define RCPT(name, groups) "{" name "'agency':'a','groups':" groups "}"
#define RCPT_OK RCPT ("'name':'n',", "['g']")
#define REP_LEARN(groups, recipients) \
    F ("['report-learning',5,{'seq':1,'time':2,'from':'f','agency':'a','title':'T'," \
       "'review_ref':'R','review_type':'cspr','groups':" groups ",'session_by':3," \
       "'reflection_by':4,'recipients':" recipients "}]")
#define REP_RCPT(recipient) REP_LEARN ("['g']", "[" RCPT_OK "," recipient "]")

static const bad_case_t s_cases [] = {
    //  Sanity: the building blocks are valid.
    { F ("['ping',1,{}]"), OK, SGMQ_OK, NULL },
    { ESC_WITH_TITLE ("'T'"), OK, SGMQ_OK, NULL },
    { LEARN ("['neglect']", "['Do x']", "['executive']"), OK, SGMQ_OK, NULL },
    { F ("['pending-answer',1,{'items':[" ITEM (",'state':'pending'") "],'next':0}]"),
      OK, SGMQ_OK, NULL },
    { REPLAY_ITEM ("bin(32)", "[{'by':'a','key':'k','time':1}]"), OK, SGMQ_OK, NULL },
    { F ("['report',1,{}]"), OK, SGMQ_OK, NULL },
    { F ("['report',1,{'until':5,'since':0}]"), OK, SGMQ_OK, NULL },
    { REP_ESC_WITH (""), OK, SGMQ_OK, NULL },
    { REP_LEARN ("['g']", "[]"), OK, SGMQ_OK, NULL },
    { REP_RCPT (RCPT ("'acked_at':9,'name':'m',", "[]")), OK, SGMQ_OK, NULL },
    { F ("['report-end',1,{'learning':0,'escalations':0}]"), OK, SGMQ_OK, NULL },

    //  Not a frame at all.
    { "@c1", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "@c1c1c1", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "{'SGMQ':1}", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "'SGMQ'", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "5", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "nil", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "x'9453'", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "['SGMQ',1,['ping',1,{}],@c1]", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "['SGMQ',1,['ping',1,{'a':@c1}]]", FRAME, SGMQ_E_MALFORMED, "frame" },
    { "", FRAME, SGMQ_E_TRUNCATED, "frame" },

    //  Signature and version.
    { "[]", FRAME, SGMQ_E_SIGNATURE, "signature" },
    { "['SGMQ2',1,['ping',1,{}]]", FRAME, SGMQ_E_SIGNATURE, "signature" },
    { "['sgmq',1,['ping',1,{}]]", FRAME, SGMQ_E_SIGNATURE, "signature" },
    { "[x'53474d51',1,['ping',1,{}]]", FRAME, SGMQ_E_SIGNATURE, "signature" },
    { "[1,'SGMQ',['ping',1,{}]]", FRAME, SGMQ_E_SIGNATURE, "signature" },
    { "['SGMQ']", FRAME, SGMQ_E_MALFORMED, "version" },
    { "['SGMQ',2,['ping',1,{}]]", FRAME, SGMQ_E_BAD_VERSION, "version" },
    { "['SGMQ',0,['ping',1,{}]]", FRAME, SGMQ_E_BAD_VERSION, "version" },
    { "['SGMQ',18446744073709551615,['ping',1,{}]]", FRAME, SGMQ_E_BAD_VERSION, "version" },
    { "['SGMQ','1',['ping',1,{}]]", FRAME, SGMQ_E_MALFORMED, "version" },
    { "['SGMQ',-1,['ping',1,{}]]", FRAME, SGMQ_E_MALFORMED, "version" },
    { "['SGMQ',1.0,['ping',1,{}]]", FRAME, SGMQ_E_MALFORMED, "version" },
    { "['SGMQ',1]", FRAME, SGMQ_E_MALFORMED, "frame" },

    //  Counts, size, depth, trailing bytes.
    { "['SGMQ',1,rep(1024,['ping',1,{}])]", OK, SGMQ_OK, NULL },
    { "['SGMQ',1,rep(1025,['ping',1,{}])]", FRAME, SGMQ_E_TOO_MANY, "frame" },
    { "['SGMQ',1,['ping',1,{}]] @00", FRAME, SGMQ_E_TRAILING, "frame" },
    { "['SGMQ',1,['ping',1,{}]] ['SGMQ',1,['ping',1,{}]]", FRAME, SGMQ_E_TRAILING, "frame" },
    { F ("['ping',1,{'a':[[[[]]]]}]"), FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { F ("['ping',1,{'a':[[[{}]]]}]"), FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { F ("['ping',1,{'a':[[[]]]}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "a" },
    { "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
      FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { "@ddffffffff", FRAME, SGMQ_E_TRUNCATED, "frame" },
    { "@ddffffffffa453474d5101", FRAME, SGMQ_E_TRUNCATED, "frame" },
    { "@dc0005a453474d5101", FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,@dfffffffff]"), FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,@de7fff]"), FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,{@dbffffffff:1}]"), FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,{'a':@c6ffffffff}]"), FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,{'a':@c9ffffffff01}]"), FRAME, SGMQ_E_TRUNCATED, "frame" },
    { F ("['ping',1,{'a':@cf0000}]"), FRAME, SGMQ_E_TRUNCATED, "frame" },

    //  The command envelope.
    { F ("'ping'"), CMD, SGMQ_E_MALFORMED, "command" },
    { F ("{'ping':1}"), CMD, SGMQ_E_MALFORMED, "command" },
    { F ("['ping',1]"), CMD, SGMQ_E_MALFORMED, "command" },
    { F ("['ping',1,{},{}]"), CMD, SGMQ_E_MALFORMED, "command" },
    { F ("[]"), CMD, SGMQ_E_MALFORMED, "command" },
    { F ("[1,1,{}]"), CMD, SGMQ_E_WRONG_TYPE, "name" },
    { F ("[x'70696e67',1,{}]"), CMD, SGMQ_E_WRONG_TYPE, "name" },
    { F ("['frobnicate',9,{}]"), CMD, SGMQ_E_UNKNOWN_COMMAND, "name" },
    { F ("['PING',9,{}]"), CMD, SGMQ_E_UNKNOWN_COMMAND, "name" },
    { F ("['ping\\x00',9,{}]"), CMD, SGMQ_E_UNKNOWN_COMMAND, "name" },
    { F ("['ping','1',{}]"), CMD, SGMQ_E_WRONG_TYPE, "id" },
    { F ("['ping',-1,{}]"), CMD, SGMQ_E_WRONG_TYPE, "id" },
    { F ("['ping',nil,{}]"), CMD, SGMQ_E_WRONG_TYPE, "id" },
    { F ("['ping',1,[]]"), CMD, SGMQ_E_WRONG_TYPE, "body" },
    { F ("['ping',1,nil]"), CMD, SGMQ_E_WRONG_TYPE, "body" },
    { F ("['ping',1,{'x':1}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "x" },
    { F ("['bye',1,{'reason':'done'}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "reason" },
    { F ("['ping',1,{1:1}]"), CMD, SGMQ_E_WRONG_TYPE, "body" },
    { F ("['ack',1,{rep(25,'seq':1)}]"), CMD, SGMQ_E_TOO_MANY, "body" },
    { F ("['ack',1,{rep(24,'seq':1)}]"), CMD, SGMQ_E_DUPLICATE_FIELD, "seq" },
    //  The longest map there is: all 19 keys of REPORT-ESCALATION.
    { REP_ESC ("1", "'responded'", "true", "4294967295", REP_ESC_ALL), OK, SGMQ_OK, NULL },
    { F ("['ack',1,{'seq':1,'seq':2}]"), CMD, SGMQ_E_DUPLICATE_FIELD, "seq" },
    { F ("['ack',1,{'seq':1,'Seq':2}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "Seq" },
    { F ("['ack',1,{'se\\x01q':2}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "se?q" },
    //  Space is printable: a path keeps it (only other bytes become ?).
    { F ("['ack',1,{'se q':2}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "se q" },

    //  Missing required fields.
    { F ("['ack',1,{}]"), CMD, SGMQ_E_MISSING_FIELD, "seq" },
    { F ("['confirm',1,{'seq':1,'duplicate':false}]"), CMD, SGMQ_E_MISSING_FIELD, "time" },
    { F ("['publish',1,{'ref':'r','kind':'escalation'}]"), CMD, SGMQ_E_MISSING_FIELD, "body" },
    { F ("['publish',1,{'ref':'r','body':{}}]"), CMD, SGMQ_E_MISSING_FIELD, "kind" },
    { PUB ("escalation", "{'group':'g'}"), CMD, SGMQ_E_MISSING_FIELD, "body.title" },
    { F ("['pending-answer',1,{'items':[" ITEM ("") "],'next':0}]"),
      CMD, SGMQ_E_MISSING_FIELD, "items[0].state" },
    { F ("['replay-end',1,{'count':0,'head_seq':0,'head_hash':bin(32),"
         "'checkpoint':{'seq':1,'time':1,'hash':bin(32)}}]"),
      CMD, SGMQ_E_MISSING_FIELD, "checkpoint.signature" },
    { F ("['error',1,{'code':400}]"), CMD, SGMQ_E_MISSING_FIELD, "reason" },

    //  Unknown fields, at every level.
    { ESC_WITH_TITLE ("'T','colour':'red'"), CMD, SGMQ_E_UNKNOWN_FIELD, "body.colour" },
    { F ("['publish',7,{'ref':'r','kind':'escalation','body':{},'from':'me'}]"),
      CMD, SGMQ_E_UNKNOWN_FIELD, "from" },
    { REPLAY_ITEM ("bin(32)", "[{'by':'a','key':'k','time':1,'sig':1}]"),
      CMD, SGMQ_E_UNKNOWN_FIELD, "acks[0].sig" },

    //  The Escalation Tracker report.
    { REP_RCPT (RCPT ("'name':'n','colour':'red',", "[]")),
      CMD, SGMQ_E_UNKNOWN_FIELD, "recipients[1].colour" },
    { REP_RCPT (RCPT ("'name':'n','name':'m',", "[]")),
      CMD, SGMQ_E_DUPLICATE_FIELD, "recipients[1].name" },
    { F ("['report',1,{'group':'executive'}]"), CMD, SGMQ_E_UNKNOWN_FIELD, "group" },
    { F ("['report',1,{'since':1,'since':2}]"), CMD, SGMQ_E_DUPLICATE_FIELD, "since" },
    { REP_ESC_WITH (",'body':{}"), CMD, SGMQ_E_UNKNOWN_FIELD, "body" },
    { F ("['report-end',1,{'escalations':0,'learning':0,'count':0}]"),
      CMD, SGMQ_E_UNKNOWN_FIELD, "count" },
    //  Missing fields.
    { REP_RCPT (RCPT ("", "[]")), CMD, SGMQ_E_MISSING_FIELD, "recipients[1].name" },
    { REP_RCPT (RCPT ("'acked_at':1,", "['g']")),
      CMD, SGMQ_E_MISSING_FIELD, "recipients[1].name" },
    { REP_RCPT ("{'name':'n','agency':'a'}"), CMD, SGMQ_E_MISSING_FIELD, "recipients[1].groups" },
    { REP_RCPT ("{'name':'n','groups':[]}"), CMD, SGMQ_E_MISSING_FIELD, "recipients[1].agency" },
    { F ("['report-escalation',4,{'seq':1}]"), CMD, SGMQ_E_MISSING_FIELD, "time" },
    { F ("['report-escalation',4,{'seq':1,'time':2,'from':'f','agency':'','group':'g',"
         "'title':'T','severity':'high','respond_by':3,'ack_by':4,'status':'raised',"
         "'overdue_ack':false,'reminders':0}]"),
      CMD, SGMQ_E_MISSING_FIELD, "overdue_response" },
    { F ("['report-learning',5,{'seq':1,'time':2,'from':'f','agency':'a','title':'T',"
         "'review_ref':'R','review_type':'cspr','groups':['g'],'session_by':3,"
         "'reflection_by':4}]"),
      CMD, SGMQ_E_MISSING_FIELD, "recipients" },
    { F ("['report-end',1,{'escalations':0}]"), CMD, SGMQ_E_MISSING_FIELD, "learning" },
    //  Wrong types.
    { REP_ESC ("'1'", "'raised'", "false", "0", ""), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { REP_ESC ("1", "2", "false", "0", ""), CMD, SGMQ_E_WRONG_TYPE, "status" },
    { REP_ESC ("1", "['raised']", "false", "0", ""), CMD, SGMQ_E_WRONG_TYPE, "status" },
    { REP_ESC ("1", "'raised'", "0", "0", ""), CMD, SGMQ_E_WRONG_TYPE, "overdue_ack" },
    { REP_ESC ("1", "'raised'", "nil", "0", ""), CMD, SGMQ_E_WRONG_TYPE, "overdue_ack" },
    { REP_ESC ("1", "'raised'", "false", "-1", ""), CMD, SGMQ_E_WRONG_TYPE, "reminders" },
    { REP_ESC_WITH (",'acked_at':'today'"), CMD, SGMQ_E_WRONG_TYPE, "acked_at" },
    { REP_ESC_WITH (",'decision':x'41'"), CMD, SGMQ_E_WRONG_TYPE, "decision" },
    { REP_LEARN ("'g'", "[]"), CMD, SGMQ_E_WRONG_TYPE, "groups" },
    { REP_LEARN ("['g']", "{}"), CMD, SGMQ_E_WRONG_TYPE, "recipients" },
    { REP_LEARN ("['g']", "['n']"), CMD, SGMQ_E_WRONG_TYPE, "recipients[0]" },
    { REP_RCPT (RCPT ("'name':'n',", "'g'")), CMD, SGMQ_E_WRONG_TYPE, "recipients[1].groups" },
    { REP_RCPT (RCPT ("'name':'n',", "['g',7]")),
      CMD, SGMQ_E_WRONG_TYPE, "recipients[1].groups[1]" },
    { REP_RCPT (RCPT ("'name':5,", "[]")), CMD, SGMQ_E_WRONG_TYPE, "recipients[1].name" },
    { REP_RCPT (RCPT ("'name':'n','acked_at':true,", "[]")),
      CMD, SGMQ_E_WRONG_TYPE, "recipients[1].acked_at" },
    { F ("['report',1,{'since':-1}]"), CMD, SGMQ_E_WRONG_TYPE, "since" },
    { F ("['report',1,{'until':'2023-10-31'}]"), CMD, SGMQ_E_WRONG_TYPE, "until" },
    { F ("['report-end',1,{'escalations':1.0,'learning':0}]"),
      CMD, SGMQ_E_WRONG_TYPE, "escalations" },
    //  Enums and values.
    { REP_ESC ("1", "'closed'", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "status" },
    { REP_ESC ("1", "'Raised'", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "status" },
    { REP_ESC ("1", "'raised '", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "status" },
    { REP_ESC ("1", "'delivered'", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "status" },
    { REP_ESC ("1", "''", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "status" },
    { F ("['report-escalation',4,{'severity':'urgent'}]"),
      CMD, SGMQ_E_BAD_VALUE, "severity" },
    { F ("['report-learning',4,{'review_type':'inquest'}]"),
      CMD, SGMQ_E_BAD_VALUE, "review_type" },
    { REP_ESC ("0", "'raised'", "false", "0", ""), CMD, SGMQ_E_BAD_VALUE, "seq" },
    { REP_ESC_WITH (",'response_seq':0"), CMD, SGMQ_E_BAD_VALUE, "response_seq" },
    { REP_ESC ("1", "'raised'", "false", "4294967296", ""), CMD, SGMQ_E_BAD_VALUE, "reminders" },
    //  Strings.
    { REP_ESC_WITH (",'acked_by':''"), CMD, SGMQ_E_BAD_VALUE, "acked_by" },
    { REP_ESC_WITH (",'acked_by':str(65)"), CMD, SGMQ_E_TOO_LONG, "acked_by" },
    { REP_ESC_WITH (",'decision':str(2000)"), OK, SGMQ_OK, NULL },
    { REP_ESC_WITH (",'decision':str(2001)"), CMD, SGMQ_E_TOO_LONG, "decision" },
    { REP_ESC_WITH (",'response_summary':str(4000)"), OK, SGMQ_OK, NULL },
    { REP_ESC_WITH (",'response_summary':str(4001)"), CMD, SGMQ_E_TOO_LONG, "response_summary" },
    { REP_ESC_WITH (",'decision':'bell\\x07'"), CMD, SGMQ_E_BAD_VALUE, "decision" },
    { REP_ESC_WITH (",'acked_by':'two\\nlines'"), CMD, SGMQ_E_BAD_VALUE, "acked_by" },
    { REP_ESC_WITH (",'response_summary':'\\xed\\xa0\\x80'"),
      CMD, SGMQ_E_BAD_UTF8, "response_summary" },
    { REP_RCPT (RCPT ("'name':'',", "[]")), CMD, SGMQ_E_BAD_VALUE, "recipients[1].name" },
    { REP_RCPT (RCPT ("'name':str(65),", "[]")), CMD, SGMQ_E_TOO_LONG, "recipients[1].name" },
    { REP_RCPT (RCPT ("'name':'\\xc0\\xaf',", "[]")),
      CMD, SGMQ_E_BAD_UTF8, "recipients[1].name" },
    { REP_RCPT (RCPT ("'name':'n',", "['a\\x01b']")),
      CMD, SGMQ_E_BAD_VALUE, "recipients[1].groups[0]" },
    { REP_RCPT (RCPT ("'name':'n',", "['']")),
      CMD, SGMQ_E_BAD_VALUE, "recipients[1].groups[0]" },
    { REP_RCPT ("{'name':'n','agency':str(65),'groups':[]}"),
      CMD, SGMQ_E_TOO_LONG, "recipients[1].agency" },
    //  Counts and depth: a recipient's groups sit at depth 6, the deepest
    //  allowed; anything inside them is too deep for the whole frame.
    { REP_LEARN ("['g']", "[rep(4096," RCPT_OK ")]"), OK, SGMQ_OK, NULL },
    { REP_LEARN ("['g']", "[rep(4097,0)]"), CMD, SGMQ_E_TOO_MANY, "recipients" },
    { REP_RCPT (RCPT ("'name':'n',", "[rep(16,'g')]")), OK, SGMQ_OK, NULL },
    { REP_RCPT (RCPT ("'name':'n',", "[rep(17,'g')]")),
      CMD, SGMQ_E_TOO_MANY, "recipients[1].groups" },
    { REP_LEARN ("[rep(17,'g')]", "[]"), CMD, SGMQ_E_TOO_MANY, "groups" },
    { REP_LEARN ("[]", "[]"), CMD, SGMQ_E_BAD_VALUE, "groups" },
    { REP_RCPT (RCPT ("'name':'n',", "[['g']]")), FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { REP_RCPT (RCPT ("'name':'n',", "['g',{}]")), FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { REP_RCPT (RCPT ("'name':'n',", "[[]]")), FRAME, SGMQ_E_TOO_DEEP, "frame" },
    { REP_RCPT ("{'name':'n','agency':'a','groups':[],'acked_at':{}}"),
      CMD, SGMQ_E_WRONG_TYPE, "recipients[1].acked_at" },
    { REP_RCPT ("{'name':'n','agency':'a','groups':[],'acked_at':[[]]}"),
      FRAME, SGMQ_E_TOO_DEEP, "frame" },

    //  Unknown kinds.
    { PUB ("rumour", "{}"), CMD, SGMQ_E_UNKNOWN_KIND, "kind" },
    { PUB ("Escalation", "{}"), CMD, SGMQ_E_UNKNOWN_KIND, "kind" },
    { F ("['replay',1,{'kind':'gossip'}]"), CMD, SGMQ_E_UNKNOWN_KIND, "kind" },
    { PUB ("reminder", "{'reason':'ack-overdue','about':1,'about_kind':'memo',"
           "'title':'t','due':1,'count':1}"),
      CMD, SGMQ_E_UNKNOWN_KIND, "body.about_kind" },
    { F ("['publish',7,{'ref':'r','kind':1,'body':{}}]"), CMD, SGMQ_E_WRONG_TYPE, "kind" },

    //  Wrong types, one per field type.
    { F ("['ack',1,{'seq':'1'}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':-1}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':@d0fb}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':1.0}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':nil}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':true}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':@d40001}]"), CMD, SGMQ_E_WRONG_TYPE, "seq" },
    { F ("['ack',1,{'seq':@d005}]"), OK, SGMQ_OK, NULL },
    { F ("['confirm',1,{'seq':1,'time':1,'duplicate':1}]"), CMD, SGMQ_E_WRONG_TYPE, "duplicate" },
    { F ("['confirm',1,{'seq':1,'time':1,'duplicate':'true'}]"), CMD, SGMQ_E_WRONG_TYPE, "duplicate" },
    { ESC_WITH_TITLE ("x'41'"), CMD, SGMQ_E_WRONG_TYPE, "body.title" },
    { ESC_WITH_TITLE ("5"), CMD, SGMQ_E_WRONG_TYPE, "body.title" },
    { PUB ("escalation", ESC ("'g'", "'T'", "'S'", "3", "'r'", "1", "")),
      CMD, SGMQ_E_WRONG_TYPE, "body.severity" },
    { LEARN ("'neglect'", "['r']", "['g']"), CMD, SGMQ_E_WRONG_TYPE, "body.theme" },
    { LEARN ("{'a':1}", "['r']", "['g']"), CMD, SGMQ_E_WRONG_TYPE, "body.theme" },
    { LEARN ("['a',2]", "['r']", "['g']"), CMD, SGMQ_E_WRONG_TYPE, "body.theme[1]" },
    { LEARN ("['a']", "['r']", "['g',x'00']"), CMD, SGMQ_E_WRONG_TYPE, "body.groups[1]" },
    { REPLAY_ITEM ("'hash'", "[]"), CMD, SGMQ_E_WRONG_TYPE, "hash" },
    { REPLAY_ITEM ("bin(32)", "{}"), CMD, SGMQ_E_WRONG_TYPE, "acks" },
    { REPLAY_ITEM ("bin(32)", "['a']"), CMD, SGMQ_E_WRONG_TYPE, "acks[0]" },
    { F ("['replay-end',1,{'count':0,'head_seq':0,'head_hash':bin(32),'checkpoint':[]}]"),
      CMD, SGMQ_E_WRONG_TYPE, "checkpoint" },
    { PUB ("escalation", "[]"), CMD, SGMQ_E_WRONG_TYPE, "body" },
    { PUB ("escalation", "x'80'"), CMD, SGMQ_E_WRONG_TYPE, "body" },
    { F ("['welcome',1,{'name':'n','agency':'a','roles':['member',1],'groups':[],"
         "'broker':'b','heartbeat':1,'max_frame':1}]"),
      CMD, SGMQ_E_WRONG_TYPE, "roles[1]" },

    //  Strings: limits, UTF-8, control characters, emptiness.
    { ESC_WITH_TITLE ("str(200)"), OK, SGMQ_OK, NULL },
    { ESC_WITH_TITLE ("str(201)"), CMD, SGMQ_E_TOO_LONG, "body.title" },
    { ESC_WITH_SUMMARY ("str(4000)"), OK, SGMQ_OK, NULL },
    { ESC_WITH_SUMMARY ("str(4001)"), CMD, SGMQ_E_TOO_LONG, "body.summary" },
    { F ("['publish',7,{'ref':str(65),'kind':'escalation','body':{}}]"),
      CMD, SGMQ_E_TOO_LONG, "ref" },
    { F ("['error',1,{'code':400,'reason':str(257)}]"), CMD, SGMQ_E_TOO_LONG, "reason" },
    { LEARN ("[str(101)]", "['r']", "['g']"), CMD, SGMQ_E_TOO_LONG, "body.theme[0]" },
    { ESC_WITH_TITLE ("'caf\\xc3\\xa9 \\xe2\\x80\\x93 \\xf0\\x9f\\x98\\x80'"), OK, SGMQ_OK, NULL },
    { ESC_WITH_TITLE ("'\\xc0\\xaf'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xe0\\x80\\xaf'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xf0\\x80\\x80\\xaf'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xed\\xa0\\x80'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xed\\xbf\\xbf'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xf4\\x90\\x80\\x80'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'ab\\xe2\\x82'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'ab\\xe2\\x82x'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\x80'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'\\xff'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_TITLE ("'a\\x00b'"), CMD, SGMQ_E_BAD_UTF8, "body.title" },
    { ESC_WITH_SUMMARY ("'a\\x00b'"), CMD, SGMQ_E_BAD_UTF8, "body.summary" },
    { ESC_WITH_TITLE ("'a\\x01b'"), CMD, SGMQ_E_BAD_VALUE, "body.title" },
    { ESC_WITH_TITLE ("'two\\nlines'"), CMD, SGMQ_E_BAD_VALUE, "body.title" },
    { ESC_WITH_TITLE ("'tab\\there'"), CMD, SGMQ_E_BAD_VALUE, "body.title" },
    { ESC_WITH_TITLE ("'del\\x7f'"), CMD, SGMQ_E_BAD_VALUE, "body.title" },
    { ESC_WITH_SUMMARY ("'two\\nlines\\r\\nand\\ttab'"), OK, SGMQ_OK, NULL },
    { ESC_WITH_SUMMARY ("'bell\\x07'"), CMD, SGMQ_E_BAD_VALUE, "body.summary" },
    { ESC_WITH_SUMMARY ("'esc\\x1b[31m'"), CMD, SGMQ_E_BAD_VALUE, "body.summary" },
    { ESC_WITH_TITLE ("''"), CMD, SGMQ_E_BAD_VALUE, "body.title" },
    { F ("['publish',7,{'ref':'','kind':'escalation','body':{}}]"), CMD, SGMQ_E_BAD_VALUE, "ref" },
    { F ("['hello',1,{'client':''}]"), CMD, SGMQ_E_BAD_VALUE, "client" },
    { LEARN ("['']", "['r']", "['g']"), CMD, SGMQ_E_BAD_VALUE, "body.theme[0]" },

    //  Lists.
    { LEARN ("[rep(32,'t')]", "['r']", "['g']"), OK, SGMQ_OK, NULL },
    { LEARN ("[rep(33,'t')]", "['r']", "['g']"), CMD, SGMQ_E_TOO_MANY, "body.theme" },
    { LEARN ("['t']", "[rep(33,'r')]", "['g']"), CMD, SGMQ_E_TOO_MANY, "body.recommendation" },
    { LEARN ("['t']", "['r']", "[rep(17,'g')]"), CMD, SGMQ_E_TOO_MANY, "body.groups" },
    { LEARN ("[]", "['r']", "['g']"), CMD, SGMQ_E_BAD_VALUE, "body.theme" },
    { LEARN ("['t']", "['r']", "[]"), CMD, SGMQ_E_BAD_VALUE, "body.groups" },
    { F ("['welcome',1,{'name':'n','agency':'a','roles':[],'groups':[],"
         "'broker':'b','heartbeat':1,'max_frame':1}]"),
      CMD, SGMQ_E_BAD_VALUE, "roles" },
    { F ("['welcome',1,{'name':'n','agency':'a','roles':[rep(5,'member')],'groups':[],"
         "'broker':'b','heartbeat':1,'max_frame':1}]"),
      CMD, SGMQ_E_TOO_MANY, "roles" },
    { F ("['pending-answer',1,{'items':[rep(1001,0)],'next':0}]"), CMD, SGMQ_E_TOO_MANY, "items" },

    //  Values and enums.
    { PUB ("escalation", ESC ("'g'", "'T'", "'S'", "'urgent'", "'r'", "1", "")),
      CMD, SGMQ_E_BAD_VALUE, "body.severity" },
    { PUB ("escalation", ESC ("'g'", "'T'", "'S'", "'High'", "'r'", "1", "")),
      CMD, SGMQ_E_BAD_VALUE, "body.severity" },
    { PUB ("escalation", ESC ("'g'", "'T'", "'S'", "'high'", "'r'", "0", "")),
      CMD, SGMQ_E_BAD_VALUE, "body.respond_by" },
    { F ("['pending',1,{'scope':'everyone'}]"), CMD, SGMQ_E_BAD_VALUE, "scope" },
    { F ("['welcome',1,{'name':'n','agency':'a','roles':['member','king'],'groups':[],"
         "'broker':'b','heartbeat':1,'max_frame':1}]"),
      CMD, SGMQ_E_BAD_VALUE, "roles[1]" },
    { F ("['error',1,{'code':399,'reason':'r'}]"), CMD, SGMQ_E_BAD_VALUE, "code" },
    { F ("['error',1,{'code':600,'reason':'r'}]"), CMD, SGMQ_E_BAD_VALUE, "code" },
    { F ("['error',1,{'code':200,'reason':'r'}]"), CMD, SGMQ_E_BAD_VALUE, "code" },
    { F ("['error',1,{'code':4294967697,'reason':'r'}]"), CMD, SGMQ_E_BAD_VALUE, "code" },
    { F ("['error',1,{'code':599,'reason':'r'}]"), OK, SGMQ_OK, NULL },
    { F ("['ack',1,{'seq':0}]"), CMD, SGMQ_E_BAD_VALUE, "seq" },
    { F ("['confirm',1,{'seq':0,'time':0,'duplicate':false}]"), CMD, SGMQ_E_BAD_VALUE, "seq" },
    { F ("['subscribe',1,{'window':0}]"), CMD, SGMQ_E_BAD_VALUE, "window" },
    { F ("['subscribe',1,{'window':10001}]"), CMD, SGMQ_E_BAD_VALUE, "window" },
    { F ("['subscribe',1,{'window':10000}]"), OK, SGMQ_OK, NULL },
    { F ("['pending',1,{'scope':'mine','limit':1001}]"), CMD, SGMQ_E_BAD_VALUE, "limit" },
    { F ("['deliver',0,{'seq':1,'time':1,'kind':'response','from':'f','agency':'a',"
         "'groups':['g'],'attempt':4294967296,'body':{}}]"),
      CMD, SGMQ_E_BAD_VALUE, "attempt" },
    //  DELIVER is unsolicited: its id is 0 (3.5, 4.2).
    { F ("['deliver',5,{'seq':1,'time':1,'kind':'response','from':'f','agency':'a',"
         "'groups':['g'],'attempt':1,'body':{'to':1,'decision':'d','summary':'s'}}]"),
      CMD, SGMQ_E_BAD_VALUE, "id" },
    { F ("['deliver',0,{'seq':1,'time':1,'kind':'response','from':'f','agency':'a',"
         "'groups':['g'],'attempt':1,'body':{'to':1,'decision':'d','summary':'s',"
         "'action':['ok',str(1001)]}}]"),
      CMD, SGMQ_E_TOO_LONG, "body.action[1]" },

    //  Binaries.
    { REPLAY_ITEM ("bin(31)", "[]"), CMD, SGMQ_E_BAD_VALUE, "hash" },
    { REPLAY_ITEM ("bin(33)", "[]"), CMD, SGMQ_E_BAD_VALUE, "hash" },
    { REPLAY_ITEM ("bin(0)", "[]"), CMD, SGMQ_E_BAD_VALUE, "hash" },
    { F ("['replay-end',1,{'count':0,'head_seq':0,'head_hash':bin(32),"
         "'checkpoint':{'seq':1,'time':1,'hash':bin(32),'signature':bin(32)}}]"),
      CMD, SGMQ_E_BAD_VALUE, "checkpoint.signature" },
    { F ("['replay-item',3,{'seq':1,'time':2,'kind':'learning','from':'p',"
         "'from_key':'','agency':'','groups':['g'],'body':x'','hash':bin(32),"
         "'prev':bin(32),'acks':[]}]"),
      CMD, SGMQ_E_BAD_VALUE, "body" },
};

static void
check_case (sgmq_proto_frame_t *frame, const bad_case_t *c, size_t number)
{
    size_t size;
    uint8_t *data = mp (c->input, &size);
    sgmq_proto_error_t error;
    memset (&error, 0x55, sizeof (error));
    int rc = sgmq_proto_decode (frame, data, size, &error);
    const sgmq_cmd_t *cmd = NULL;
    if (rc == 0) {
        assert_int_equal (error.code, SGMQ_OK);
        cmd = sgmq_proto_cmd (frame, 0, &error);
    }
    if (c->level == OK) {
        if (rc != 0 || !cmd)
            fail_msg ("case %zu: %s\n  unexpected error %d %s", number, c->input,
                      error.code, error.reason);
    }
    else {
        bool at_frame = c->level == FRAME;
        if (at_frame ? rc != -2 : (rc != 0 || cmd != NULL)
            || error.code != c->code || strcmp (error.field, c->field) != 0)
            fail_msg ("case %zu: %s\n  expected %s %d '%s', got rc=%d code=%d '%s' (%s)",
                      number, c->input, at_frame ? "frame" : "command",
                      c->code, c->field, rc, error.code, error.field, error.reason);
        assert_int_equal (error.index, at_frame ? -1 : 0);
        if (getenv ("TEST_PROTO_VERBOSE"))
            printf ("%3zu %d %-22s %s\n", number, error.code, error.field,
                    error.reason);
        //  The reason names the field, and both can go back in an ERROR.
        assert_non_null (strstr (error.reason, error.field));
        sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
        sgmq_cmd_t answer = { .cmd = SGMQ_CMD_ERROR, .id = error.id };
        answer.u.error.code = (uint32_t) error.code;
        answer.u.error.reason = error.reason;
        answer.u.error.field = error.field [0] ? error.field : NULL;
        sgmq_proto_error_t werror;
        if (sgmq_proto_write (writer, &answer, &werror) != 0)
            fail_msg ("case %zu: error not echoable: %s", number, werror.reason);
        sgmq_proto_writer_destroy (&writer);
    }
    //  Whatever the input, memory stays within a fixed multiple of it.
    assert_true (sgmq_proto_frame_arena_size (frame) <= sgmq_proto_arena_bound (size));
    free (data);
}

static void
test_malformed_table (void **state)
{
    (void) state;
    for (size_t i = 0; i < sizeof (s_cases) / sizeof (s_cases [0]); i++) {
        sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
        check_case (frame, &s_cases [i], i);
        sgmq_proto_frame_destroy (&frame);
    }
}

//  Every prefix of a valid frame is TRUNCATED: never a crash, never
//  another code.
static void
test_every_prefix_truncated (void **state)
{
    (void) state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    for (size_t i = 0; i < n; i++)
        assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
    size_t size = sgmq_proto_writer_size (writer);
    //  A private copy of exactly `cut` bytes, so ASan sees any overread.
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *prefix = malloc (cut ? cut : 1);
        memcpy (prefix, sgmq_proto_writer_data (writer), cut);
        sgmq_proto_error_t error;
        assert_int_equal (sgmq_proto_decode (frame, prefix, cut, &error), -2);
        if (error.code != SGMQ_E_TRUNCATED)
            fail_msg ("cut %zu: %d %s", cut, error.code, error.reason);
        assert_int_equal (error.index, -1);
        free (prefix);
    }
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  A five-byte header that declares four billion elements allocates
//  nothing of the sort.
static void
test_huge_counts (void **state)
{
    (void) state;
    static const char *const inputs [] = {
        "@ddffffffff",
        F ("['pending-answer',1,{'items':@ddffffffff}]"),
        F ("['pending-answer',1,{'items':[rep(1000,{})],'next':0}]"),
        F ("['replay-item',1,{'acks':[rep(4096,{})]}]"),
        F ("['publish',1,{'ref':'r','kind':'learning','body':{'theme':[rep(32,'')]}}]"),
        F ("rep(1024,['publish',1,{'ref':'r','kind':'learning','body':{'theme':[rep(32,'')]}}])"),
        F ("rep(1024,['replay-item',1,{'acks':[rep(16,{'by':'a','key':'k','time':1})],'x':1}])"),
        F ("['report-learning',1,{'recipients':@ddffffffff}]"),
        F ("['report-learning',1,{'recipients':[rep(4096,{'groups':[rep(16,'')]})]}]"),
        //  Every recipient copied (struct, names, group pointers), then the
        //  command fails on its last key and gives it all back; 1,024 times.
        F ("rep(1024,['report-learning',1,{'recipients':[rep(8,"
           "{'name':'n','agency':'','groups':[rep(16,'g')]})],'x':1}])"),
    };
    for (size_t i = 0; i < sizeof (inputs) / sizeof (inputs [0]); i++) {
        size_t size;
        uint8_t *data = mp (inputs [i], &size);
        sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
        sgmq_proto_error_t error;
        int rc = sgmq_proto_decode (frame, data, size, &error);
        if (rc == 0)
            for (size_t c = 0; c < sgmq_proto_count (frame); c++)
                assert_null (sgmq_proto_cmd (frame, c, &error));
        size_t used = sgmq_proto_frame_arena_size (frame);
        if (used > sgmq_proto_arena_bound (size))
            fail_msg ("input %zu: %zu bytes of arena for %zu of input", i, used, size);
        sgmq_proto_frame_destroy (&frame);
        free (data);
    }
}

static void
test_bad_command_isolated (void **state)
{
    (void) state;
    size_t size;
    uint8_t *data = mp (F ("['ack',11,{'seq':5}],"
                           "['publish',12,{'ref':'r','kind':'escalation','body':"
                           ESC ("'g'", "str(201)", "'S'", "'high'", "'r'", "1", "") "}],"
                           "['ack',13,{'seq':6}]"), &size);
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_proto_error_t error;
    assert_int_equal (sgmq_proto_decode (frame, data, size, &error), 0);
    assert_int_equal (sgmq_proto_count (frame), 3);
    const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, 0, &error);
    assert_non_null (cmd);
    assert_true (cmd->id == 11 && cmd->u.ack.seq == 5);
    assert_null (sgmq_proto_cmd (frame, 1, &error));
    assert_int_equal (error.code, SGMQ_E_TOO_LONG);
    assert_int_equal (error.index, 1);
    assert_true (error.id == 12);
    assert_string_equal (error.field, "body.title");
    assert_string_equal (error.reason, "body.title: string of 201 bytes, limit 200");
    cmd = sgmq_proto_cmd (frame, 2, &error);
    assert_non_null (cmd);
    assert_true (cmd->id == 13 && cmd->u.ack.seq == 6);
    assert_int_equal (error.code, SGMQ_OK);
    //  Asking twice gives the same answer.
    assert_null (sgmq_proto_cmd (frame, 1, &error));
    assert_true (error.id == 12);
    free (data);
    sgmq_proto_frame_destroy (&frame);
}

//  The request id is echoed whenever it can be read, even when the command
//  is unknown (so a newer client probing for one gets its 405 matched).
static void
test_error_ids (void **state)
{
    (void) state;
    static const struct {
        const char *input;
        uint64_t id;
    } cases [] = {
        { F ("['frobnicate',99,{}]"), 99 },
        { F ("[7,98,{}]"), 98 },
        { F ("['ping',97]"), 97 },
        { F ("['ping',96,{},1]"), 96 },
        { F ("['ping',95,{'x':1}]"), 95 },
        { F ("[['a',[1]],94,{}]"), 94 },
        { F ("['ping','93',{}]"), 0 },
        { F ("['ping']"), 0 },
        { F ("'ping'"), 0 },
    };
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases [0]); i++) {
        size_t size;
        uint8_t *data = mp (cases [i].input, &size);
        sgmq_proto_error_t error;
        assert_int_equal (sgmq_proto_decode (frame, data, size, &error), 0);
        assert_null (sgmq_proto_cmd (frame, 0, &error));
        assert_true (error.id == cases [i].id);
        free (data);
    }
    sgmq_proto_frame_destroy (&frame);
}

//  --------------------------------------------------------------------------
//  Writer

static void
test_writer_refuses_invalid (void **state)
{
    (void) state;
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_cmd_t ok = { .cmd = SGMQ_CMD_ACK, .id = 1 };
    ok.u.ack.seq = 1;
    assert_int_equal (sgmq_proto_write (writer, &ok, NULL), 0);
    size_t size = sgmq_proto_writer_size (writer);

    static char long_title [SGMQ_PROTO_MAX_TITLE + 2];
    memset (long_title, 'a', sizeof (long_title) - 1);
    sgmq_cmd_t bad [24];
    memset (bad, 0, sizeof (bad));
    int codes [24];
    const char *fields [24];
    size_t n = 0;
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_PUBLISH, .id = 2 };
    bad [n].u.publish.ref = "r";
    bad [n].u.publish.body = sample_body (SGMQ_KIND_ESCALATION, true);
    bad [n].u.publish.body.u.escalation.title = long_title;
    codes [n] = SGMQ_E_TOO_LONG;
    fields [n++] = "body.title";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_PUBLISH, .id = 2 };
    bad [n].u.publish.body = sample_body (SGMQ_KIND_ESCALATION, true);
    codes [n] = SGMQ_E_MISSING_FIELD;
    fields [n++] = "ref";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_PUBLISH, .id = 2 };
    bad [n].u.publish.ref = "r";
    codes [n] = SGMQ_E_UNKNOWN_KIND;
    fields [n++] = "kind";
    bad [n] = (sgmq_cmd_t) { .cmd = (sgmq_cmd_id_t) 0 };
    codes [n] = SGMQ_E_UNKNOWN_COMMAND;
    fields [n++] = "command";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_COUNT_ };
    codes [n] = SGMQ_E_UNKNOWN_COMMAND;
    fields [n++] = "command";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_ACK };
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "seq";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_PENDING };
    bad [n].u.pending.scope = SGMQ_SCOPE_COUNT_;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "scope";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_ERROR };
    bad [n].u.error.code = 200;
    bad [n].u.error.reason = "fine";
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "code";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_ERROR };
    bad [n].u.error.code = 500;
    bad [n].u.error.reason = "bad \xc0\xaf";
    codes [n] = SGMQ_E_BAD_UTF8;
    fields [n++] = "reason";
    static const char *const bad_roles [] = { "member", "overlord" };
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_WELCOME };
    bad [n].u.welcome.name = bad [n].u.welcome.agency = bad [n].u.welcome.broker = "x";
    bad [n].u.welcome.roles = LIST (bad_roles);
    bad [n].u.welcome.heartbeat = bad [n].u.welcome.max_frame = 1;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "roles[1]";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_PENDING_ANSWER };
    bad [n].u.pending_answer.count = 1;
    bad [n].u.pending_answer.items = s_items;
    codes [n] = SGMQ_E_MISSING_FIELD;       //  s_items is zeroed here
    fields [n++] = "items[0].recipient";
    bad [n] = (sgmq_cmd_t) { .cmd = SGMQ_CMD_DELIVER };
    bad [n].u.deliver.seq = bad [n].u.deliver.attempt = 1;
    bad [n].u.deliver.from = bad [n].u.deliver.agency = "x";
    bad [n].u.deliver.groups = LIST (s_one_group);
    bad [n].u.deliver.body.kind = SGMQ_KIND_ESCALATION;
    bad [n].u.deliver.body_bytes = (const uint8_t *) "\x81\xa1x\x01";
    bad [n].u.deliver.body_size = 4;
    codes [n] = SGMQ_E_UNKNOWN_FIELD;
    fields [n++] = "body.x";

    //  The report: each of these is one change to a valid item.
    sgmq_cmd_t esc = { .cmd = SGMQ_CMD_REPORT_ESCALATION, .id = 3 };
    esc.u.report_escalation.seq = 1;
    esc.u.report_escalation.from = esc.u.report_escalation.group = "g";
    esc.u.report_escalation.agency = "";
    esc.u.report_escalation.title = "T";
    esc.u.report_escalation.severity = SGMQ_SEVERITY_HIGH;
    esc.u.report_escalation.status = SGMQ_ESC_ACKNOWLEDGED;
    assert_int_equal (sgmq_proto_write (writer, &esc, NULL), 0);
    sgmq_proto_writer_reset (writer);
    assert_int_equal (sgmq_proto_write (writer, &ok, NULL), 0);
    bad [n] = esc;
    bad [n].u.report_escalation.status = 0;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "status";
    bad [n] = esc;
    bad [n].u.report_escalation.status = SGMQ_ESC_COUNT_;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "status";
    bad [n] = esc;
    bad [n].u.report_escalation.severity = 0;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "severity";
    bad [n] = esc;
    bad [n].u.report_escalation.title = NULL;
    codes [n] = SGMQ_E_MISSING_FIELD;
    fields [n++] = "title";
    bad [n] = esc;
    bad [n].u.report_escalation.acked_by = "";
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "acked_by";
    bad [n] = esc;
    bad [n].u.report_escalation.decision = "fine";
    bad [n].u.report_escalation.response_summary = "tab\tok, bell\a not";
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "response_summary";

    static const char *const seventeen [SGMQ_PROTO_MAX_GROUPS + 1] = {
        "g", "g", "g", "g", "g", "g", "g", "g", "g", "g", "g", "g", "g", "g",
        "g", "g", "g"
    };
    static sgmq_recipient_t no_name [2], too_many_groups [1];
    no_name [0] = (sgmq_recipient_t) { "n", "a", { 1, s_one_group }, 0 };
    no_name [1] = (sgmq_recipient_t) { NULL, "a", { 0, NULL }, 5 };
    too_many_groups [0] = (sgmq_recipient_t) { "n", "", { 17, seventeen }, 0 };
    sgmq_cmd_t learn = { .cmd = SGMQ_CMD_REPORT_LEARNING, .id = 4 };
    learn.u.report_learning.seq = 1;
    learn.u.report_learning.from = learn.u.report_learning.title = "f";
    learn.u.report_learning.review_ref = learn.u.report_learning.agency = "r";
    learn.u.report_learning.review_type = SGMQ_REVIEW_AUDIT;
    learn.u.report_learning.groups = LIST (s_one_group);
    learn.u.report_learning.recipient_count = 1;
    learn.u.report_learning.recipients = no_name;
    assert_int_equal (sgmq_proto_write (writer, &learn, NULL), 0);
    sgmq_proto_writer_reset (writer);
    assert_int_equal (sgmq_proto_write (writer, &ok, NULL), 0);
    bad [n] = learn;
    bad [n].u.report_learning.recipient_count = 2;
    codes [n] = SGMQ_E_MISSING_FIELD;
    fields [n++] = "recipients[1].name";
    bad [n] = learn;
    bad [n].u.report_learning.recipients = too_many_groups;
    codes [n] = SGMQ_E_TOO_MANY;
    fields [n++] = "recipients[0].groups";
    bad [n] = learn;
    bad [n].u.report_learning.recipient_count = SGMQ_PROTO_MAX_RECIPIENTS + 1;
    codes [n] = SGMQ_E_TOO_MANY;
    fields [n++] = "recipients";
    bad [n] = learn;
    bad [n].u.report_learning.recipients = NULL;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "recipients";
    bad [n] = learn;
    bad [n].u.report_learning.groups.count = 0;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "groups";
    bad [n] = learn;
    bad [n].u.report_learning.review_type = SGMQ_REVIEW_COUNT_;
    codes [n] = SGMQ_E_BAD_VALUE;
    fields [n++] = "review_type";
    assert_true (n <= sizeof (bad) / sizeof (bad [0]));

    memset (s_items, 0, sizeof (s_items));
    s_items [0].seq = 1;
    s_items [0].kind = SGMQ_KIND_RESPONSE;
    s_items [0].state = SGMQ_STATE_PENDING;
    for (size_t i = 0; i < n; i++) {
        sgmq_proto_error_t error;
        if (sgmq_proto_write (writer, &bad [i], &error) != -2
            || error.code != codes [i] || strcmp (error.field, fields [i]) != 0)
            fail_msg ("bad %zu: expected %d '%s', got %d '%s' (%s)", i, codes [i],
                      fields [i], error.code, error.field, error.reason);
        //  Frame unchanged.
        assert_int_equal (sgmq_proto_writer_count (writer), 1);
        assert_int_equal (sgmq_proto_writer_size (writer), size);
    }
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         sgmq_proto_writer_size (writer), NULL), 0);
    assert_int_equal (sgmq_proto_count (frame), 1);
    sgmq_proto_frame_destroy (&frame);
    sgmq_proto_writer_destroy (&writer);
}

static void
test_writer_full (void **state)
{
    (void) state;
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_proto_error_t error;

    //  By count.
    sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 1 };
    for (int i = 0; i < SGMQ_PROTO_MAX_COMMANDS; i++)
        assert_int_equal (sgmq_proto_write (writer, &ping, NULL), 0);
    size_t size = sgmq_proto_writer_size (writer);
    assert_int_equal (sgmq_proto_write (writer, &ping, &error), -1);
    assert_int_equal (sgmq_proto_writer_count (writer), SGMQ_PROTO_MAX_COMMANDS);
    assert_int_equal (sgmq_proto_writer_size (writer), size);
    //  Even when full, an invalid command is -2, not -1.
    sgmq_cmd_t bad = { .cmd = SGMQ_CMD_ACK };
    assert_int_equal (sgmq_proto_write (writer, &bad, &error), -2);
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         sgmq_proto_writer_size (writer), NULL), 0);
    assert_int_equal (sgmq_proto_count (frame), SGMQ_PROTO_MAX_COMMANDS);

    //  By size: replay items with 100 KiB bodies.
    sgmq_proto_writer_reset (writer);
    assert_int_equal (sgmq_proto_writer_count (writer), 0);
    size_t body_size = 100 * 1024;
    uint8_t *body = calloc (1, body_size);
    sgmq_cmd_t item = { .cmd = SGMQ_CMD_REPLAY_ITEM, .id = 5 };
    item.u.replay_item.seq = 1;
    item.u.replay_item.kind = SGMQ_KIND_RESPONSE;
    item.u.replay_item.from = "f";
    item.u.replay_item.from_key = "";
    item.u.replay_item.agency = "";
    item.u.replay_item.groups = LIST (s_one_group);
    item.u.replay_item.body = body;
    item.u.replay_item.body_size = body_size;
    int written = 0;
    int rc;
    while ((rc = sgmq_proto_write (writer, &item, &error)) == 0)
        written++;
    assert_int_equal (rc, -1);
    assert_int_equal (written, SGMQ_PROTO_MAX_FRAME / (int) body_size);
    size = sgmq_proto_writer_size (writer);
    assert_true (size <= SGMQ_PROTO_MAX_FRAME);
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         size, &error), 0);
    assert_int_equal (sgmq_proto_count (frame), written);

    //  Exactly at the limit is allowed: fill up with the right body size.
    sgmq_proto_writer_reset (writer);
    item.u.replay_item.body_size = 1;
    assert_int_equal (sgmq_proto_write (writer, &item, NULL), 0);
    size_t overhead = sgmq_proto_writer_size (writer) - 1 - 1;     //  bin8 header + 1 byte
    sgmq_proto_writer_reset (writer);
    item.u.replay_item.body_size = SGMQ_PROTO_MAX_FRAME - overhead - 4;    //  bin32 header
    free (body);
    body = calloc (1, SGMQ_PROTO_MAX_FRAME);
    item.u.replay_item.body = body;
    assert_int_equal (sgmq_proto_write (writer, &item, &error), 0);
    assert_int_equal (sgmq_proto_writer_size (writer), SGMQ_PROTO_MAX_FRAME);
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         SGMQ_PROTO_MAX_FRAME, &error), 0);
    assert_non_null (sgmq_proto_cmd (frame, 0, &error));
    //  One byte more cannot fit in any frame: -2 TOO_LARGE, not -1 forever.
    sgmq_proto_writer_reset (writer);
    item.u.replay_item.body_size++;
    assert_int_equal (sgmq_proto_write (writer, &item, &error), -2);
    assert_int_equal (error.code, SGMQ_E_TOO_LARGE);
    assert_string_equal (error.field, "command");    //  no one field is at fault
    assert_int_equal (sgmq_proto_writer_count (writer), 0);
    free (body);
    //  The writer refuses a DELIVER with an id, as the decoder does.
    sgmq_cmd_t deliver = { .cmd = SGMQ_CMD_DELIVER, .id = 5 };
    assert_int_equal (sgmq_proto_write (writer, &deliver, &error), -2);
    assert_int_equal (error.code, SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "id");

    //  A frame one byte over the limit is refused by the decoder.
    uint8_t *big = calloc (1, SGMQ_PROTO_MAX_FRAME + 1);
    assert_int_equal (sgmq_proto_decode (frame, big, SGMQ_PROTO_MAX_FRAME + 1, &error), -2);
    assert_int_equal (error.code, SGMQ_E_TOO_LARGE);
    free (big);
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  The frame header is a fixarray up to 13 commands and an array16 after.
static void
test_writer_header_forms (void **state)
{
    (void) state;
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_cmd_t ping = { .cmd = SGMQ_CMD_PING, .id = 1 };
    for (size_t n = 1; n <= 20; n++) {
        assert_int_equal (sgmq_proto_write (writer, &ping, NULL), 0);
        const uint8_t *data = sgmq_proto_writer_data (writer);
        size_t size = sgmq_proto_writer_size (writer);
        if (n + 2 <= 15)
            assert_int_equal (data [0], 0x90 | (n + 2));
        else {
            assert_int_equal (data [0], 0xdc);
            assert_int_equal (data [1] * 256 + data [2], n + 2);
        }
        assert_int_equal (data [1 + (n + 2 > 15) * 2], 0xa4);
        assert_int_equal (sgmq_proto_decode (frame, data, size, NULL), 0);
        assert_int_equal (sgmq_proto_count (frame), n);
    }
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  Decoding into the same frame again reuses the arena and forgets the
//  previous commands; the memory kept stays bounded.
static void
test_frame_reuse (void **state)
{
    (void) state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < n; i++) {
            sgmq_proto_writer_reset (writer);
            assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
            assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                                 sgmq_proto_writer_size (writer), NULL), 0);
            check_cmd (&cmds [i], sgmq_proto_cmd (frame, 0, NULL));
        }
    assert_true (sgmq_proto_frame_arena_size (frame) <= 2 * SGMQ_PROTO_MAX_FRAME);
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  A frame big enough to need many arena blocks, with failing commands
//  between good ones (their copies are given back, across block
//  boundaries), decoded several times into the same frame.
static void
test_arena_blocks (void **state)
{
    (void) state;
    size_t cap = 256 * 1024, used = 0;
    char *notation = malloc (cap);
    used += (size_t) snprintf (notation, cap, "['SGMQ',1");
    size_t commands = 600;
    for (size_t i = 0; i < commands; i++) {
        //  Good ones carry a 1,200-byte summary; bad ones the same, then a
        //  title one byte too long, found after the summary is copied.
        const char *title = i % 3 == 1 ? "str(201)" : "'T'";
        char one [512];
        int wrote = snprintf (one, sizeof (one),
                              ",['publish',%zu,{'ref':'r','kind':'escalation','body':"
                              "{'summary':str(1200),'group':'g','severity':'low',"
                              "'requested':'r','respond_by':1,'title':%s}}]",
                              i + 1, title);
        assert_true (wrote > 0 && used + (size_t) wrote + 2 < cap);
        memcpy (notation + used, one, (size_t) wrote);
        used += (size_t) wrote;
    }
    memcpy (notation + used, "]", 2);
    size_t size;
    uint8_t *data = mp (notation, &size);
    free (notation);
    assert_true (size < SGMQ_PROTO_MAX_FRAME);

    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    for (int round = 0; round < 3; round++) {
        sgmq_proto_error_t error;
        assert_int_equal (sgmq_proto_decode (frame, data, size, &error), 0);
        assert_int_equal (sgmq_proto_count (frame), commands);
        for (size_t i = 0; i < commands; i++) {
            const sgmq_cmd_t *cmd = sgmq_proto_cmd (frame, i, &error);
            if (i % 3 == 1) {
                assert_null (cmd);
                assert_int_equal (error.code, SGMQ_E_TOO_LONG);
                assert_string_equal (error.field, "body.title");
                assert_true (error.id == i + 1);
                continue;
            }
            assert_non_null (cmd);
            assert_true (cmd->id == i + 1);
            const char *summary = cmd->u.publish.body.u.escalation.summary;
            assert_int_equal (strlen (summary), 1200);
            assert_int_equal (strspn (summary, "a"), 1200);
            assert_string_equal (cmd->u.publish.body.u.escalation.title, "T");
            assert_string_equal (cmd->u.publish.ref, "r");
        }
        assert_true (sgmq_proto_frame_arena_size (frame)
                     <= sgmq_proto_arena_bound (size));
        //  A small frame in between, so the next round starts from a
        //  different point in the block chain.
        uint8_t small [] = { 0x93, 0xa4, 'S', 'G', 'M', 'Q', 0x01,
                             0x93, 0xa4, 'p', 'i', 'n', 'g', 0x01, 0x80 };
        assert_int_equal (sgmq_proto_decode (frame, small, sizeof (small), NULL), 0);
        assert_non_null (sgmq_proto_cmd (frame, 0, NULL));
    }
    free (data);
    sgmq_proto_frame_destroy (&frame);
}

//  --------------------------------------------------------------------------
//  The Escalation Tracker report

//  Decoding a learning item with many recipients, each with the most
//  groups, keeps to the arena bound; and a recipient list too big for any
//  frame is refused by the writer with TOO_LARGE (so a sender knows at
//  once that "send and retry" cannot help), while one of ordinary size fits.
static void
test_report_learning_size (void **state)
{
    (void) state;
    static char names [SGMQ_PROTO_MAX_GROUPS][SGMQ_PROTO_MAX_NAME + 1];
    static const char *groups [SGMQ_PROTO_MAX_GROUPS];
    for (size_t i = 0; i < SGMQ_PROTO_MAX_GROUPS; i++) {
        memset (names [i], 'a' + (int) i, SGMQ_PROTO_MAX_NAME);
        groups [i] = names [i];
    }
    sgmq_recipient_t *recipients = calloc (SGMQ_PROTO_MAX_RECIPIENTS,
                                           sizeof (*recipients));
    assert_non_null (recipients);
    for (size_t i = 0; i < SGMQ_PROTO_MAX_RECIPIENTS; i++)
        recipients [i] = (sgmq_recipient_t) {
            names [i % SGMQ_PROTO_MAX_GROUPS], names [0],
            { SGMQ_PROTO_MAX_GROUPS, groups }, 1700000000000ULL + i
        };
    sgmq_cmd_t item = { .cmd = SGMQ_CMD_REPORT_LEARNING, .id = 9 };
    item.u.report_learning.seq = 1;
    item.u.report_learning.from = item.u.report_learning.title = "f";
    item.u.report_learning.review_ref = item.u.report_learning.agency = "r";
    item.u.report_learning.review_type = SGMQ_REVIEW_CSPR;
    item.u.report_learning.groups = LIST (s_one_group);
    item.u.report_learning.recipients = recipients;

    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_proto_frame_t *frame = sgmq_proto_frame_new ();
    sgmq_proto_error_t error;
    item.u.report_learning.recipient_count = SGMQ_PROTO_MAX_RECIPIENTS;
    assert_int_equal (sgmq_proto_write (writer, &item, &error), -2);
    assert_int_equal (error.code, SGMQ_E_TOO_LARGE);
    assert_int_equal (sgmq_proto_writer_count (writer), 0);

    //  As many of the largest recipients as fit in one frame.
    uint32_t fit = 0;
    for (uint32_t step = SGMQ_PROTO_MAX_RECIPIENTS; step; step /= 2) {
        item.u.report_learning.recipient_count = fit + step;
        sgmq_proto_writer_reset (writer);
        if (fit + step <= SGMQ_PROTO_MAX_RECIPIENTS
            && sgmq_proto_write (writer, &item, NULL) == 0)
            fit += step;
    }
    assert_true (fit > 800 && fit < SGMQ_PROTO_MAX_RECIPIENTS);
    item.u.report_learning.recipient_count = fit;
    sgmq_proto_writer_reset (writer);
    assert_int_equal (sgmq_proto_write (writer, &item, &error), 0);
    size_t size = sgmq_proto_writer_size (writer);
    assert_true (size <= SGMQ_PROTO_MAX_FRAME);
    sgmq_proto_frame_destroy (&frame);
    frame = sgmq_proto_frame_new ();
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         size, &error), 0);
    const sgmq_cmd_t *back = sgmq_proto_cmd (frame, 0, &error);
    assert_non_null (back);
    check_cmd (&item, back);
    assert_true (sgmq_proto_frame_arena_size (frame) <= sgmq_proto_arena_bound (size));

    //  Every recipient, with short names and two groups, fits easily.
    for (size_t i = 0; i < SGMQ_PROTO_MAX_RECIPIENTS; i++)
        recipients [i] = (sgmq_recipient_t) {
            "member-of-staff-0042", "local-authority", LIST (s_groups),
            i % 3 ? 1700000000000ULL + i : 0
        };
    item.u.report_learning.recipient_count = SGMQ_PROTO_MAX_RECIPIENTS;
    sgmq_proto_writer_reset (writer);
    assert_int_equal (sgmq_proto_write (writer, &item, &error), 0);
    assert_int_equal (sgmq_proto_decode (frame, sgmq_proto_writer_data (writer),
                                         sgmq_proto_writer_size (writer), &error), 0);
    back = sgmq_proto_cmd (frame, 0, &error);
    assert_non_null (back);
    check_cmd (&item, back);

    free (recipients);
    sgmq_proto_writer_destroy (&writer);
    sgmq_proto_frame_destroy (&frame);
}

//  The exact bytes of PROTOCOL.md's worked example for REPORT, and of a
//  REPORT-END: keys in table order, absent optionals left out.
static void
test_report_bytes (void **state)
{
    (void) state;
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    sgmq_cmd_t report = { .cmd = SGMQ_CMD_REPORT, .id = 5 };
    report.u.report.since = 1696118400000ULL;      //  2023-10-01T00:00:00Z
    report.u.report.until = 1698796799999ULL;      //  2023-10-31T23:59:59.999Z
    assert_int_equal (sgmq_proto_write (writer, &report, NULL), 0);
    static const uint8_t expected [] = {
        0x93, 0xa4, 'S', 'G', 'M', 'Q', 0x01,
        0x93, 0xa6, 'r', 'e', 'p', 'o', 'r', 't', 0x05,
        0x82, 0xa5, 's', 'i', 'n', 'c', 'e',
        0xcf, 0x00, 0x00, 0x01, 0x8a, 0xe8, 0x88, 0xe4, 0x00,
        0xa5, 'u', 'n', 't', 'i', 'l',
        0xcf, 0x00, 0x00, 0x01, 0x8b, 0x88, 0x2e, 0x07, 0xff
    };
    assert_int_equal (sgmq_proto_writer_size (writer), sizeof (expected));
    assert_memory_equal (sgmq_proto_writer_data (writer), expected, sizeof (expected));

    sgmq_proto_writer_reset (writer);
    sgmq_cmd_t end = { .cmd = SGMQ_CMD_REPORT_END, .id = 5 };
    end.u.report_end.escalations = 3;
    assert_int_equal (sgmq_proto_write (writer, &end, NULL), 0);
    static const uint8_t expected_end [] = {
        0x93, 0xa4, 'S', 'G', 'M', 'Q', 0x01,
        0x93, 0xaa, 'r', 'e', 'p', 'o', 'r', 't', '-', 'e', 'n', 'd', 0x05,
        0x82, 0xab, 'e', 's', 'c', 'a', 'l', 'a', 't', 'i', 'o', 'n', 's', 0x03,
        0xa8, 'l', 'e', 'a', 'r', 'n', 'i', 'n', 'g', 0x00
    };
    assert_int_equal (sgmq_proto_writer_size (writer), sizeof (expected_end));
    assert_memory_equal (sgmq_proto_writer_data (writer), expected_end,
                         sizeof (expected_end));
    sgmq_proto_writer_destroy (&writer);
}

//  --------------------------------------------------------------------------
//  Seed corpus for tests/fuzz/corpus/proto: run with
//  TEST_PROTO_WRITE_CORPUS=DIR to (re)write it. The files are checked in;
//  nothing needs this to run first.

static void
write_seed (const char *dir, const char *name, const void *data, size_t size)
{
    char path [512];
    snprintf (path, sizeof (path), "%s/%s", dir, name);
    assert_int_equal (testutil_write_file (path, data, size), 0);
}

static void
write_seed_notation (const char *dir, const char *name, const char *notation)
{
    size_t size;
    uint8_t *data = mp (notation, &size);
    write_seed (dir, name, data, size);
    free (data);
}

static void
write_corpus (void **state)
{
    const char *dir = *state;
    sgmq_cmd_t cmds [MAX_SAMPLES];
    size_t n = sample_cmds (cmds, MAX_SAMPLES);
    sgmq_proto_writer_t *writer = sgmq_proto_writer_new ();
    //  One frame per command: the sample with the longest encoding.
    for (int which = 1; which < SGMQ_CMD_COUNT_; which++) {
        size_t best = n, best_size = 0;
        for (size_t i = 0; i < n; i++) {
            if ((int) cmds [i].cmd != which)
                continue;
            sgmq_proto_writer_reset (writer);
            assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
            if (sgmq_proto_writer_size (writer) > best_size) {
                best = i;
                best_size = sgmq_proto_writer_size (writer);
            }
        }
        assert_true (best < n);
        sgmq_proto_writer_reset (writer);
        assert_int_equal (sgmq_proto_write (writer, &cmds [best], NULL), 0);
        char name [64];
        snprintf (name, sizeof (name), "cmd-%s", sgmq_proto_cmd_name (which));
        write_seed (dir, name, sgmq_proto_writer_data (writer),
                    sgmq_proto_writer_size (writer));
    }
    sgmq_proto_writer_reset (writer);
    for (size_t i = 0; i < n; i++)
        assert_int_equal (sgmq_proto_write (writer, &cmds [i], NULL), 0);
    write_seed (dir, "batch-all", sgmq_proto_writer_data (writer),
                sgmq_proto_writer_size (writer));
    write_seed (dir, "bad-truncated", sgmq_proto_writer_data (writer),
                sgmq_proto_writer_size (writer) / 2);
    for (int kind = 1; kind < SGMQ_KIND_COUNT_; kind++) {
        sgmq_body_t body = sample_body ((sgmq_kind_t) kind, true);
        size_t size;
        uint8_t *bytes = sgmq_proto_encode_body (&body, &size, NULL);
        char name [64];
        snprintf (name, sizeof (name), "body-%s", sgmq_proto_kind_name (kind));
        write_seed (dir, name, bytes, size);
        free (bytes);
    }
    write_seed_notation (dir, "bad-signature", "['SGMP',1,['ping',1,{}]]");
    write_seed_notation (dir, "bad-version", "['SGMQ',2,['ping',1,{}]]");
    write_seed_notation (dir, "bad-unknown-command", F ("['frobnicate',9,{}]"));
    write_seed_notation (dir, "bad-deep", F ("['ping',1,{'a':[[[[]]]]}]"));
    write_seed_notation (dir, "bad-huge-count", "@ddffffffffa453474d5101");
    write_seed_notation (dir, "bad-report-deep",
                         REP_RCPT (RCPT ("'name':'n',", "['g',['h']]")));
    write_seed_notation (dir, "bad-one-of-three",
                         F ("['ack',11,{'seq':5}],"
                            "['publish',12,{'ref':'r','kind':'escalation','body':"
                            ESC ("'g'", "'\\xed\\xa0\\x80'", "'S'", "'high'",
                                 "'r'", "1", "") "}],"
                            "['ack',13,{'seq':6}]"));
    sgmq_proto_writer_destroy (&writer);
}

int
main (void)
{
    const char *corpus = getenv ("TEST_PROTO_WRITE_CORPUS");
    if (corpus) {
        const struct CMUnitTest writers [] = {
            cmocka_unit_test_prestate (write_corpus, (void *) corpus),
        };
        return cmocka_run_group_tests (writers, NULL, NULL);
    }
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_names),
        cmocka_unit_test (test_malformed_table),
        cmocka_unit_test (test_every_prefix_truncated),
        cmocka_unit_test (test_huge_counts),
        cmocka_unit_test (test_bad_command_isolated),
        cmocka_unit_test (test_error_ids),
        cmocka_unit_test (test_roundtrip_each),
        cmocka_unit_test (test_roundtrip_batch),
        cmocka_unit_test (test_trusted_bodies),
        cmocka_unit_test (test_decode_liberal_forms),
        cmocka_unit_test (test_canonical_body),
        cmocka_unit_test (test_body_errors),
        cmocka_unit_test (test_writer_refuses_invalid),
        cmocka_unit_test (test_writer_full),
        cmocka_unit_test (test_writer_header_forms),
        cmocka_unit_test (test_frame_reuse),
        cmocka_unit_test (test_arena_blocks),
        cmocka_unit_test (test_report_learning_size),
        cmocka_unit_test (test_report_bytes),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

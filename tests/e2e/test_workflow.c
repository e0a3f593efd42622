/*  End-to-end: the broker's work. Publish and confirm (idempotent refs);
    fan-out to exactly the members of the addressed groups; an offline
    member catches up in order; a restart (clean or SIGKILL) loses nothing
    confirmed and keeps ack state; redelivery with backoff and flagging;
    every authorization rule refused with its error; the escalation
    workflow (overdue -> reminder -> repeat -> response -> resolved); the
    learning reminders (fire once, survive a restart, cancelled by
    updates); a stalled subscriber does not hold the others up.

    Deadlines are shortened through the config only. */
#include "e2e.h"
#include "sgmq_time.h"

#include <czmq.h>
#include <sodium.h>

//  The cast of a partnership, made in each test's deployment.
typedef struct {
    e2e_t *e2e;
    char *police;               //  publisher for exploitation
    char *exec1, *exec2;        //  Executive members
    char *chair;                //  exploitation sub-group member
    char *online;               //  online-safety member
    char *rrwg;                 //  Rapid Review Working Group member (learning)
    char *auditor;
} s_cast_t;

//  A config duration of `ms` milliseconds, scaled by SGMQ_TEST_SCALE like
//  every wait in the tests, so the broker's timers keep their proportion
//  to the test's waits under sanitizers and valgrind. Rotates four
//  buffers: a call can use several.
static const char *
s_ms (int64_t ms)
{
    static char buffers [4][32];
    static int next;
    char *text = buffers [next++ % 4];
    snprintf (text, sizeof buffers [0], "%lldms", (long long) testutil_ms (ms));
    return text;
}

static s_cast_t *
s_cast_new (const char *tag, ...)
{
    s_cast_t *c = calloc (1, sizeof *c);
    c->e2e = e2e_new (tag, NULL);
    va_list args;
    va_start (args, tag);
    const char *path;
    while ((path = va_arg (args, const char *)))
        e2e_config_set (c->e2e, path, va_arg (args, const char *));
    va_end (args);
    c->police = e2e_principal (c->e2e, "police.cert", "Police case system",
                               "Metropolitan Police", "publisher", "exploitation");
    c->exec1 = e2e_principal (c->e2e, "exec1.cert", "Executive member (police)",
                              "Metropolitan Police", "member", "executive");
    c->exec2 = e2e_principal (c->e2e, "exec2.cert", "Executive member (ICB)",
                              "Integrated Care Board", "member", "executive");
    c->chair = e2e_principal (c->e2e, "chair.cert", "Exploitation sub-group chair",
                              "Local Authority Exploitation Service", "member",
                              "exploitation");
    c->online = e2e_principal (c->e2e, "online.cert", "Online safety lead",
                               "Metropolitan Police", "member", "online-safety");
    c->rrwg = e2e_principal (c->e2e, "rrwg.cert", "Rapid Review Working Group chair",
                             "Local Authority Safeguarding and QA", "member,publisher",
                             "rapid-review-working-group");
    c->auditor = e2e_principal (c->e2e, "auditor.cert", "Independent scrutineer",
                                "Safeguarding Partnership", "auditor", NULL);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    return c;
}

static void
s_cast_destroy (s_cast_t **c_p)
{
    s_cast_t *c = *c_p;
    e2e_destroy (&c->e2e);
    free (c->police);
    free (c->exec1);
    free (c->exec2);
    free (c->chair);
    free (c->online);
    free (c->rrwg);
    free (c->auditor);
    free (c);
    *c_p = NULL;
}

static sgmq_client_t *
s_subscriber (s_cast_t *c, const char *cert, uint32_t window)
{
    sgmq_client_t *client = e2e_connect (c->e2e, cert);
    sgmq_error_t error;
    assert_int_equal (sgmq_client_subscribe (client, window, NULL, &error), 0);
    return client;
}

static void
s_ack (sgmq_client_t *client, uint64_t seq)
{
    sgmq_error_t error;
    int rc = sgmq_client_ack (client, seq, NULL, &error);
    if (rc)
        fprintf (stderr, "ack %llu: %d %s\n", (unsigned long long) seq, error.code,
                 error.reason);
    assert_int_equal (rc, 0);
}

//  Publish and return the error code (0: confirmed, seq in *seq).
static int
s_publish (sgmq_client_t *client, const char *ref, const sgmq_body_t *body,
           uint64_t *seq, sgmq_error_t *error)
{
    sgmq_confirm_t confirm;
    int rc = sgmq_client_publish (client, ref, body, &confirm, error);
    if (seq)
        *seq = rc == 0 ? confirm.seq : 0;
    return rc ? error->code : 0;
}

static sgmq_body_t
s_response (uint64_t to)
{
    static const char *actions [] = { "Circulate the protocol" };
    sgmq_body_t body = { .kind = SGMQ_KIND_RESPONSE };
    body.u.response.to = to;
    body.u.response.decision = "Agreed";
    body.u.response.summary = "The Executive agrees the protocol.";
    body.u.response.action = (sgmq_strlist_t) { 1, actions };
    return body;
}

static sgmq_body_t
s_learning (const char *const *groups, uint32_t group_count, uint64_t session_by,
            uint64_t reflection_by)
{
    static const char *themes [] = { "professional curiosity" };
    static const char *recommendations [] = { "Record who lives in the home" };
    sgmq_body_t body = { .kind = SGMQ_KIND_LEARNING };
    body.u.learning.review_type = SGMQ_REVIEW_CSPR;
    body.u.learning.review_ref = "CSPR-2026-03";
    body.u.learning.title = "Infant neglect";
    body.u.learning.summary = "Learning from a review.";
    body.u.learning.theme = (sgmq_strlist_t) { 1, themes };
    body.u.learning.recommendation = (sgmq_strlist_t) { 1, recommendations };
    body.u.learning.groups = (sgmq_strlist_t) { group_count, groups };
    body.u.learning.session_by = session_by;
    body.u.learning.reflection_by = reflection_by;
    return body;
}

//  --------------------------------------------------------------------------

static void
test_publish_confirm_and_idempotent_refs (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("publish", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t first = e2e_escalate (police, "exploitation", "First");
    uint64_t second = e2e_escalate (police, "exploitation", "Second");
    assert_int_equal (first, 1);
    assert_int_equal (second, 2);

    //  A retry with the same ref is the same message, stored once.
    sgmq_body_t body = s_response (1);
    body.kind = SGMQ_KIND_ESCALATION;
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = "Retried";
    body.u.escalation.summary = "A summary";
    body.u.escalation.severity = SGMQ_SEVERITY_LOW;
    body.u.escalation.requested = "Help";
    body.u.escalation.respond_by = sgmq_time_now () + 86400000;
    sgmq_confirm_t a, b;
    sgmq_error_t error;
    assert_int_equal (sgmq_client_publish (police, "case-system-0001", &body, &a, &error), 0);
    assert_int_equal (sgmq_client_publish (police, "case-system-0001", &body, &b, &error), 0);
    assert_false (a.duplicate);
    assert_true (b.duplicate);
    assert_int_equal (a.seq, b.seq);
    assert_true (a.time >= 1);
    //  The same ref for something else is a conflict, and stores nothing.
    body.u.escalation.title = "Something else";
    assert_int_equal (s_publish (police, "case-system-0001", &body, NULL, &error),
                      SGMQ_E_CONFLICT);
    assert_int_equal (e2e_escalate (police, "exploitation", "Next"), a.seq + 1);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

static void
test_fan_out_reaches_exactly_the_members (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("fanout", NULL);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    sgmq_client_t *exec2 = s_subscriber (c, c->exec2, 0);
    sgmq_client_t *chair = s_subscriber (c, c->chair, 0);
    sgmq_client_t *online = s_subscriber (c, c->online, 0);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);

    uint64_t esc = e2e_escalate (police, "exploitation", "Fan-out");
    const sgmq_delivery_t *d = e2e_recv (exec1, 5000);
    assert_int_equal (d->seq, esc);
    assert_int_equal (d->kind, SGMQ_KIND_ESCALATION);
    assert_string_equal (d->from, "Police case system");
    assert_string_equal (d->agency, "Metropolitan Police");
    assert_string_equal (d->body.u.escalation.title, "Fan-out");
    assert_int_equal (d->attempt, 1);
    assert_int_equal (e2e_recv (exec2, 5000)->seq, esc);
    s_ack (exec1, esc);
    s_ack (exec2, esc);

    //  The response goes to the raising group and the Executive, but not
    //  back to the member who wrote it.
    sgmq_body_t response = s_response (esc);
    uint64_t resp;
    sgmq_error_t error;
    assert_int_equal (s_publish (exec1, NULL, &response, &resp, &error), 0);
    d = e2e_recv (chair, 5000);
    assert_int_equal (d->seq, resp);
    assert_int_equal (d->body.u.response.to, esc);
    assert_int_equal (e2e_recv (exec2, 5000)->seq, resp);
    s_ack (chair, resp);
    s_ack (exec2, resp);

    //  A learning alert to online-safety only.
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    const char *groups [] = { "online-safety" };
    sgmq_body_t learning = s_learning (groups, 1, 0, 0);
    uint64_t alert;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &alert, &error), 0);
    d = e2e_recv (online, 5000);
    assert_int_equal (d->seq, alert);
    //  Defaults filled in by the broker: +14 days and +1 year.
    assert_true (d->body.u.learning.session_by >= d->time + 14ULL * 86400000);
    //  (a calendar year: 365 or 366 days, an hour less across a change
    //  of the clocks)
    assert_true (d->body.u.learning.reflection_by >= d->time + 365ULL * 86400000 - 3600000);
    s_ack (online, alert);

    //  Nobody got anything else.
    assert_true (e2e_quiet (exec1, 300));
    assert_true (e2e_quiet (exec2, 100));
    assert_true (e2e_quiet (chair, 100));
    assert_true (e2e_quiet (online, 100));
    //  Acking what was not yours is an error.
    assert_int_equal (sgmq_client_ack (online, esc, NULL, &error), -1);
    assert_int_equal (error.code, SGMQ_E_NOT_FOUND);
    sgmq_client_destroy (&rrwg);
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&exec2);
    sgmq_client_destroy (&chair);
    sgmq_client_destroy (&online);
    s_cast_destroy (&c);
}

//  Everything a delivery of an escalation carries, as one line.
static void
s_describe (const sgmq_delivery_t *d, char *out, size_t size)
{
    assert_int_equal (d->kind, SGMQ_KIND_ESCALATION);
    const sgmq_escalation_t *e = &d->body.u.escalation;
    int n = snprintf (out, size, "%llu %llu %s %s %u [%s] %s %s %s %d %s %llu %s",
                      (unsigned long long) d->seq, (unsigned long long) d->time,
                      d->from, d->agency, d->attempt,
                      d->groups.count ? d->groups.items [0] : "", e->group,
                      e->title, e->summary, (int) e->severity, e->requested,
                      (unsigned long long) e->respond_by,
                      e->case_ref ? e->case_ref : "-");
    assert_true (n > 0 && (size_t) n < size);
    assert_int_equal (d->groups.count, 1);
}

static void
test_offline_member_catches_up_in_order (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("catchup", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t seqs [6];
    for (int i = 0; i < 5; i++)
        seqs [i] = e2e_escalate (police, "exploitation", "While you were away");
    //  A window smaller than the backlog: the rest must come in order too.
    sgmq_client_t *exec1 = e2e_connect (c->e2e, c->exec1);
    sgmq_error_t error;
    uint64_t backlog = 0;
    assert_int_equal (sgmq_client_subscribe (exec1, 2, &backlog, &error), 0);
    assert_int_equal (backlog, 5);
    char seen [5][512];
    for (int i = 0; i < 5; i++) {
        const sgmq_delivery_t *d = e2e_recv (exec1, 5000);
        assert_int_equal (d->seq, seqs [i]);
        assert_string_equal (d->from, "Police case system");
        assert_string_equal (d->agency, "Metropolitan Police");
        assert_string_equal (d->body.u.escalation.group, "exploitation");
        assert_string_equal (d->body.u.escalation.title, "While you were away");
        s_describe (d, seen [i], sizeof seen [i]);
        s_ack (exec1, d->seq);
    }
    //  The second member is served what the broker read for the first:
    //  the same deliveries, in the same order.
    sgmq_client_t *exec2 = e2e_connect (c->e2e, c->exec2);
    assert_int_equal (sgmq_client_subscribe (exec2, 2, &backlog, &error), 0);
    assert_int_equal (backlog, 5);
    for (int i = 0; i < 5; i++) {
        const sgmq_delivery_t *d = e2e_recv (exec2, 5000);
        char again [512];
        s_describe (d, again, sizeof again);
        assert_string_equal (again, seen [i]);
        s_ack (exec2, d->seq);
    }
    seqs [5] = e2e_escalate (police, "exploitation", "Live");
    assert_int_equal (e2e_recv (exec1, 5000)->seq, seqs [5]);
    assert_int_equal (e2e_recv (exec2, 5000)->seq, seqs [5]);
    //  A subscribed member whose window is full gets what was published
    //  meanwhile (kept as it was stored) once it acks.
    const char *titles [] = { "Behind 1", "Behind 2", "Behind 3" };
    for (int i = 0; i < 3; i++)
        e2e_escalate (police, "exploitation", titles [i]);
    s_ack (exec2, seqs [5]);
    for (int i = 0; i < 3; i++) {
        const sgmq_delivery_t *d = e2e_recv (exec2, 5000);
        assert_int_equal (d->seq, seqs [5] + 1 + (uint64_t) i);
        assert_string_equal (d->from, "Police case system");
        assert_string_equal (d->agency, "Metropolitan Police");
        assert_int_equal (d->groups.count, 1);
        assert_string_equal (d->body.u.escalation.group, "exploitation");
        assert_string_equal (d->body.u.escalation.title, titles [i]);
        s_ack (exec2, d->seq);
    }
    sgmq_client_destroy (&exec2);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

typedef struct {
    uint64_t seqs [16];
    char states [16][16];
    uint32_t attempts [16];
    size_t count;
} s_items_t;

static int
s_collect (const sgmq_pending_item_t *item, void *arg)
{
    s_items_t *items = arg;
    if (items->count < 16) {
        items->seqs [items->count] = item->seq;
        snprintf (items->states [items->count], 16, "%s",
                  sgmq_proto_state_name (item->state));
        items->attempts [items->count] = item->attempts;
        items->count++;
    }
    return 0;
}

//  Items of a whole replay (fails the test if it does not end well).
static int
s_replayed (sgmq_client_t *auditor)
{
    sgmq_error_t error;
    sgmq_replay_t *replay = sgmq_client_replay (auditor, NULL, &error);
    if (!replay)
        fail_msg ("replay: %d %s", error.code, error.reason);
    const sgmq_replay_item_t *item;
    int rc, items = 0;
    while ((rc = sgmq_replay_next (replay, &item, &error)) == 1)
        items++;
    if (rc)
        fail_msg ("replay after %d items: %d %s", items, error.code, error.reason);
    sgmq_replay_destroy (&replay);
    return items;
}

static void
test_restart_loses_nothing_and_keeps_acks (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("restart", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t a = e2e_escalate (police, "exploitation", "A");
    uint64_t b = e2e_escalate (police, "exploitation", "B");
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, a);
    s_ack (exec1, a);
    sgmq_client_destroy (&exec1);
    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    assert_int_equal (s_replayed (auditor), 2);

    //  A clean restart.
    assert_int_equal (e2e_stop (c->e2e), 0);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    //  The old client reconnects by itself and its publish lands.
    uint64_t d = e2e_escalate (police, "exploitation", "C after restart");
    assert_int_equal (d, b + 1);
    //  And a crash: SIGKILL right after a confirm.
    uint64_t e = e2e_escalate (police, "exploitation", "D before the crash");
    e2e_kill (c->e2e);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    //  The auditor's old client, too, for a replay and a report (their
    //  answers stream, so it makes sure of its session first).
    assert_int_equal (s_replayed (auditor), 4);
    sgmq_error_t report_error;
    sgmq_report_t *report = sgmq_client_report (auditor, 0, 0, &report_error);
    assert_non_null (report);
    const sgmq_cmd_t *report_item;
    int report_rc;
    while ((report_rc = sgmq_report_next (report, &report_item, &report_error)) == 1)
        ;
    assert_int_equal (report_rc, 0);
    sgmq_report_destroy (&report);
    sgmq_client_destroy (&auditor);

    exec1 = e2e_connect (c->e2e, c->exec1);
    s_items_t items = { .count = 0 };
    sgmq_error_t error;
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_MINE, false, s_collect,
                                           &items, &error), 0);
    assert_int_equal (items.count, 3);      //  b, d, e: a stays acknowledged
    assert_int_equal (items.seqs [0], b);
    assert_int_equal (items.seqs [1], d);
    assert_int_equal (items.seqs [2], e);
    assert_int_equal (sgmq_client_subscribe (exec1, 0, NULL, &error), 0);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, b);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, d);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, e);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

//  Pipelined publishes outlive a crash: libsgmq sends the unanswered ones
//  again on a new session, and each is stored exactly once, in order.
static void
test_pipelined_publishes_survive_a_crash (void **state)
{
    (void) state;
    //  Below two of libsgmq's batches of 128: only the first is sent
    //  before _publish_wait.
    enum { BATCH = 128, KILL_AT = 200, COUNT = 250 };
    assert_true (COUNT < 2 * BATCH);
    s_cast_t *c = s_cast_new ("pipeline", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_body_t body = e2e_escalation ("exploitation", "Pipelined escalation");
    //  The first BATCH go at once (libsgmq sends a full batch), the next
    //  ones wait in the client, the broker dies, and more are queued: some
    //  are stored and maybe answered, some stored without an answer, some
    //  never sent; those sent after the restart find no session.
    sgmq_error_t error;
    for (int i = 1; i <= COUNT; i++) {
        if (i == KILL_AT)
            e2e_kill (c->e2e);
        char ref [32];
        snprintf (ref, sizeof ref, "pipe-%d", i);
        assert_int_equal (sgmq_client_publish_send (police, ref, &body, &error), 0);
    }
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    e2e_ledger_t ledger = { 0 };
    sgmq_confirm_t confirm;
    while (ledger.count < COUNT) {
        int rc = sgmq_client_publish_wait (police, (int) testutil_ms (10000),
                                           &confirm, &error);
        if (rc || error.code)
            fprintf (stderr, "publish_wait: %d %s\n", error.code, error.reason);
        assert_int_equal (rc, 0);
        assert_int_equal (error.code, 0);
        e2e_ledger_confirm (&ledger, &confirm);
    }
    assert_int_equal (sgmq_client_in_flight (police), 0);
    //  Seqs 1..COUNT hold the refs in the order they were queued: nothing
    //  lost, nothing stored twice, nothing else stored.
    assert_int_equal (ledger.highest, COUNT);
    for (int seq = 1; seq <= COUNT; seq++) {
        char ref [32];
        snprintf (ref, sizeof ref, "pipe-%d", seq);
        assert_string_equal (ledger.refs [seq], ref);
    }
    sgmq_client_t *exec1 = e2e_connect (c->e2e, c->exec1);
    s_items_t items = { .count = 0 };
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_MINE, false, s_collect,
                                           &items, &error), 0);
    assert_int_equal (items.seqs [0], 1);
    e2e_ledger_free (&ledger);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

//  Pipelined acks: queued, sent many per frame, answered together; a
//  refusal comes back from _ack_flush without undoing the others; acks
//  queued across a crash go again on the new session.
static void
test_pipelined_acks (void **state)
{
    (void) state;
    enum { COUNT = 40 };
    s_cast_t *c = s_cast_new ("pipeacks", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    uint64_t seqs [COUNT];
    for (int i = 0; i < COUNT; i++)
        seqs [i] = e2e_escalate (police, "exploitation", "To acknowledge");
    sgmq_error_t error;
    //  The first half, and one seq that is nobody's.
    for (int i = 0; i < COUNT / 2; i++) {
        assert_int_equal (e2e_recv (exec1, 5000)->seq, seqs [i]);
        assert_int_equal (sgmq_client_ack_send (exec1, seqs [i], &error), 0);
    }
    assert_int_equal (sgmq_client_ack_send (exec1, seqs [COUNT - 1] + 1000, &error), 0);
    assert_int_equal (sgmq_client_acks_in_flight (exec1), COUNT / 2 + 1);
    assert_int_equal (sgmq_client_ack_flush (exec1, (int) testutil_ms (5000), &error), -1);
    assert_int_equal (error.code, SGMQ_E_NOT_FOUND);
    char named [64];
    snprintf (named, sizeof named, "ack of %llu: ",
              (unsigned long long) seqs [COUNT - 1] + 1000);
    assert_memory_equal (error.reason, named, strlen (named));
    assert_int_equal (sgmq_client_acks_in_flight (exec1), 0);
    assert_int_equal (sgmq_client_ack_flush (exec1, (int) testutil_ms (5000), &error), 0);

    //  The second half: queued, then the broker dies before they leave.
    for (int i = COUNT / 2; i < COUNT; i++) {
        assert_int_equal (e2e_recv (exec1, 5000)->seq, seqs [i]);
        assert_int_equal (sgmq_client_ack_send (exec1, seqs [i], &error), 0);
    }
    e2e_kill (c->e2e);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    int rc = sgmq_client_ack_flush (exec1, (int) testutil_ms (10000), &error);
    if (rc)
        fprintf (stderr, "ack_flush: %d %s\n", error.code, error.reason);
    assert_int_equal (rc, 0);

    //  All on disk: nothing pending, nothing delivered again.
    s_items_t items = { .count = 0 };
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_MINE, false, s_collect,
                                           &items, &error), 0);
    assert_int_equal (items.count, 0);
    assert_true (e2e_quiet (exec1, 300));
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

static void
test_redelivery_backs_off_then_flags (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("redeliver", "deadlines/redeliver-first", s_ms (200),
                              "deadlines/redeliver-max", s_ms (400),
                              "deadlines/max-tries", "3", NULL);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t seq = e2e_escalate (police, "exploitation", "Unread");
    int64_t times [3];
    for (uint32_t attempt = 1; attempt <= 3; attempt++) {
        const sgmq_delivery_t *d = e2e_recv (exec1, 5000);
        assert_int_equal (d->seq, seq);
        assert_int_equal (d->attempt, attempt);
        times [attempt - 1] = testutil_now_ms ();
    }
    //  Backoff: the gaps grow (200 ms, then 400 ms) and are never shorter.
    assert_true (times [1] - times [0] >= testutil_ms (150));
    assert_true (times [2] - times [1] >= testutil_ms (350));
    //  After max-tries, no more; the delivery stays pending, flagged.
    assert_true (e2e_quiet (exec1, 1500));
    s_items_t items = { .count = 0 };
    sgmq_error_t error;
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_MINE, false, s_collect,
                                           &items, &error), 0);
    assert_int_equal (items.count, 1);
    assert_string_equal (items.states [0], "flagged");
    assert_int_equal (items.attempts [0], 3);
    //  A fresh subscription delivers it again; an ack ends it.
    assert_int_equal (sgmq_client_subscribe (exec1, 0, NULL, &error), 0);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, seq);
    s_ack (exec1, seq);
    assert_true (e2e_quiet (exec1, 1000));
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    s_cast_destroy (&c);
}

static void
s_expect_refused (sgmq_client_t *client, const sgmq_body_t *body, int code,
                  const char *rule)
{
    sgmq_error_t error;
    int got = s_publish (client, NULL, body, NULL, &error);
    if (got != code || (rule && !strstr (error.reason, rule)))
        fprintf (stderr, "expected %d '%s', got %d '%s'\n", code, rule ? rule : "",
                 got, error.reason);
    assert_int_equal (got, code);
    if (rule)
        assert_non_null (strstr (error.reason, rule));
}

static void
test_each_rule_is_refused_with_its_error (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("rules", NULL);
    //  Police systems may also raise escalations for online-safety.
    assert_int_equal (e2e_stop (c->e2e), 0);
    e2e_config_insert (c->e2e, "rules",
                       "    escalate-for\n"
                       "        police-online\n"
                       "            agency = \"Metropolitan Police\"\n"
                       "            groups = \"online-safety\"\n");
    assert_int_equal (e2e_start (c->e2e, NULL), 0);

    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_client_t *chair = e2e_connect (c->e2e, c->chair);
    sgmq_client_t *exec1 = e2e_connect (c->e2e, c->exec1);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);

    //  Escalations: publisher role, own group (or an escalate-for rule).
    assert_int_equal (e2e_escalate_code (chair, "exploitation"), SGMQ_E_FORBIDDEN);
    assert_int_equal (e2e_escalate_code (police, "domestic-abuse"), SGMQ_E_FORBIDDEN);
    assert_int_equal (e2e_escalate_code (police, "no-such-group"), SGMQ_E_BAD_VALUE);
    assert_int_equal (e2e_escalate_code (police, "online-safety"), 0);
    uint64_t esc = e2e_escalate (police, "exploitation", "For the rules");

    //  Responses: Executive members only, to an escalation that exists.
    sgmq_body_t response = s_response (esc);
    s_expect_refused (police, &response, SGMQ_E_FORBIDDEN, "rule response-executive");
    s_expect_refused (chair, &response, SGMQ_E_FORBIDDEN, "rule response-executive");
    response.u.response.to = 999;
    s_expect_refused (exec1, &response, SGMQ_E_NOT_FOUND, "no escalation");

    //  Learning: members of the learning groups only.
    const char *groups [] = { "exploitation" };
    sgmq_body_t learning = s_learning (groups, 1, 0, 0);
    s_expect_refused (police, &learning, SGMQ_E_FORBIDDEN, "rule learning-publishers");
    s_expect_refused (exec1, &learning, SGMQ_E_FORBIDDEN, "rule learning-publishers");
    const char *bad_groups [] = { "nowhere" };
    sgmq_body_t bad = s_learning (bad_groups, 1, 0, 0);
    s_expect_refused (rrwg, &bad, SGMQ_E_BAD_VALUE, "unknown group");
    const char *twice [] = { "exploitation", "executive", "exploitation" };
    bad = s_learning (twice, 3, 0, 0);
    s_expect_refused (rrwg, &bad, SGMQ_E_BAD_VALUE, "group 'exploitation' is named twice");
    sgmq_body_t update = { .kind = SGMQ_KIND_LEARNING_UPDATE };
    update.u.learning_update.alert = esc;   //  an escalation, not an alert
    update.u.learning_update.held = SGMQ_HELD_SESSION;
    s_expect_refused (rrwg, &update, SGMQ_E_NOT_FOUND, "no learning alert");
    s_expect_refused (exec1, &update, SGMQ_E_FORBIDDEN, "rule learning-publishers");

    //  Reminders: never from a client.
    sgmq_body_t reminder = { .kind = SGMQ_KIND_REMINDER };
    reminder.u.reminder.reason = SGMQ_REASON_ACK_OVERDUE;
    reminder.u.reminder.about = esc;
    reminder.u.reminder.about_kind = SGMQ_KIND_ESCALATION;
    reminder.u.reminder.title = "Forged";
    reminder.u.reminder.due = 1;
    reminder.u.reminder.count = 1;
    s_expect_refused (rrwg, &reminder, SGMQ_E_FORBIDDEN, "rule reminders");

    //  Replay: auditors only. Everyone's pending: Executive, auditors, admins.
    sgmq_error_t error;
    sgmq_replay_t *replay = sgmq_client_replay (chair, NULL, &error);
    const sgmq_replay_item_t *item;
    assert_int_equal (sgmq_replay_next (replay, &item, &error), -1);
    assert_int_equal (error.code, SGMQ_E_FORBIDDEN);
    assert_non_null (strstr (error.reason, "rule replay-auditors"));
    sgmq_replay_destroy (&replay);
    s_items_t items = { .count = 0 };
    assert_int_equal (sgmq_client_pending (chair, SGMQ_SCOPE_ALL, false, s_collect,
                                           &items, &error), -1);
    assert_int_equal (error.code, SGMQ_E_FORBIDDEN);
    assert_int_equal (sgmq_client_pending (auditor, SGMQ_SCOPE_ALL, false, s_collect,
                                           &items, &error), 0);
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_ALL, false, s_collect,
                                           &items, &error), 0);

    //  Nothing refused was stored: the next seq follows the last confirmed.
    assert_int_equal (e2e_escalate (police, "exploitation", "After"), esc + 1);
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&chair);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&rrwg);
    sgmq_client_destroy (&auditor);
    s_cast_destroy (&c);
}

//  Next delivery that is a reminder (acking nothing); fails if none.
static const sgmq_delivery_t *
s_next_reminder (sgmq_client_t *client, int ms)
{
    int64_t deadline = testutil_now_ms () + testutil_ms (ms);
    while (testutil_now_ms () < deadline) {
        const sgmq_delivery_t *d;
        sgmq_error_t error;
        if (sgmq_client_recv (client, (int) (deadline - testutil_now_ms ()), &d, &error))
            break;
        if (d->kind == SGMQ_KIND_REMINDER)
            return d;
    }
    fail_msg ("no reminder within %d ms", ms);
    return NULL;
}

typedef struct {
    uint64_t about;
    int count;
} s_overdue_t;

static int
s_count_overdue (const sgmq_pending_item_t *item, void *arg)
{
    s_overdue_t *o = arg;
    //  The escalation, or the reminder (its title is the escalation's).
    if (item->overdue && (item->seq == o->about
                          || (item->kind == SGMQ_KIND_REMINDER && item->seq > o->about)))
        o->count++;
    return 0;
}

//  Overdue items in PENDING all that are escalation `about` or reminders
//  stored after it.
static int
s_overdue_about (sgmq_client_t *executive, uint64_t about)
{
    s_overdue_t o = { about, 0 };
    sgmq_error_t error;
    assert_int_equal (sgmq_client_pending (executive, SGMQ_SCOPE_ALL, true, s_count_overdue,
                                           &o, &error), 0);
    return o.count;
}

static void
test_escalation_overdue_reminded_until_resolved (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("escalate", "deadlines/escalation-ack-by", s_ms (1000),
                              "deadlines/ack-by", s_ms (1000),
                              "deadlines/repeat", s_ms (2000),
                              "deadlines/redeliver-first", "1h",
                              "deadlines/redeliver-max", "1h", NULL);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    sgmq_client_t *chair = s_subscriber (c, c->chair, 0);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t esc = e2e_escalate (police, "exploitation", "Overdue");
    assert_int_equal (e2e_recv (exec1, 5000)->seq, esc);

    //  Nobody acknowledges: after a second, a reminder to the Executive
    //  and to the raising group.
    const sgmq_delivery_t *r = s_next_reminder (exec1, 5000);
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_ACK_OVERDUE);
    assert_int_equal (r->body.u.reminder.about, esc);
    assert_int_equal (r->body.u.reminder.about_kind, SGMQ_KIND_ESCALATION);
    assert_string_equal (r->body.u.reminder.title, "Overdue");
    assert_string_equal (r->body.u.reminder.group, "exploitation");
    assert_int_equal (r->body.u.reminder.count, 1);
    assert_string_equal (r->from, "sgmq-broker");
    uint64_t first_time = r->time, first_seq = r->seq;
    s_ack (exec1, r->seq);
    //  Both Executive members' copies are overdue now (and, a second on,
    //  the reminder's copies that nobody acknowledged).
    assert_true (s_overdue_about (exec1, esc) >= 2);
    r = s_next_reminder (chair, 5000);
    assert_int_equal (r->seq, first_seq);
    s_ack (chair, r->seq);

    //  It repeats, at the configured interval and not more often.
    r = s_next_reminder (exec1, 6000);
    assert_int_equal (r->body.u.reminder.count, 2);
    assert_true (r->time - first_time >= (uint64_t) testutil_ms (2000));
    s_ack (exec1, r->seq);

    //  The first Executive acknowledgement stops the ack reminders, and
    //  their copies are no longer overdue: only the other member's copy
    //  of the escalation is, until it is answered.
    s_ack (exec1, esc);
    assert_int_equal (s_overdue_about (exec1, esc), 1);
    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    //  Let one more repeat interval pass: no new ack-overdue reminder.
    assert_true (e2e_quiet (exec1, 3000));
    sgmq_error_t error;
    sgmq_replay_query_t query = { .kind = SGMQ_KIND_REMINDER };
    sgmq_replay_t *replay = sgmq_client_replay (auditor, &query, &error);
    assert_non_null (replay);
    const sgmq_replay_item_t *item;
    int reminders = 0;
    while (sgmq_replay_next (replay, &item, &error) == 1)
        reminders++;
    sgmq_replay_destroy (&replay);
    assert_int_equal (reminders, 2);

    //  The response resolves it: no response-overdue reminder ever comes.
    sgmq_body_t response = s_response (esc);
    uint64_t resp;
    assert_int_equal (s_publish (exec1, NULL, &response, &resp, &error), 0);
    const sgmq_delivery_t *d = e2e_recv (chair, 5000);
    while (d->kind == SGMQ_KIND_REMINDER)
        d = e2e_recv (chair, 5000);
    assert_int_equal (d->seq, resp);
    //  Answered: nobody's missing acknowledgement of it is overdue now.
    assert_int_equal (s_overdue_about (exec1, esc), 0);
    sgmq_client_destroy (&auditor);
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    sgmq_client_destroy (&chair);
    s_cast_destroy (&c);
}

static void
test_response_overdue_reminds_until_responded (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("respond", "deadlines/repeat", s_ms (1000), NULL);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = "Respond soon";
    body.u.escalation.summary = "A summary";
    body.u.escalation.severity = SGMQ_SEVERITY_CRITICAL;
    body.u.escalation.requested = "A decision";
    body.u.escalation.respond_by = sgmq_time_now () + 1500;
    uint64_t esc;
    sgmq_error_t error;
    assert_int_equal (s_publish (police, NULL, &body, &esc, &error), 0);
    assert_int_equal (e2e_recv (exec1, 5000)->seq, esc);
    s_ack (exec1, esc);         //  acknowledged, but no response
    const sgmq_delivery_t *r = s_next_reminder (exec1, 6000);
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_RESPONSE_OVERDUE);
    assert_int_equal (r->body.u.reminder.due, body.u.escalation.respond_by);
    s_ack (exec1, r->seq);
    sgmq_body_t response = s_response (esc);
    assert_int_equal (s_publish (exec1, NULL, &response, NULL, &error), 0);
    //  Resolved: no more reminders over several repeat intervals.
    assert_true (e2e_quiet (exec1, 3000));
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    s_cast_destroy (&c);
}

static void
test_learning_reminders_fire_once_and_updates_cancel (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("learning", NULL);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    const char *groups [] = { "online-safety" };
    uint64_t now = sgmq_time_now ();
    //  Session due in 2 s, reflection in 3 s; the reflection is recorded
    //  as held before it falls due.
    sgmq_body_t learning = s_learning (groups, 1, now + 2000, now + 3000);
    uint64_t alert;
    sgmq_error_t error;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &alert, &error), 0);
    sgmq_body_t update = { .kind = SGMQ_KIND_LEARNING_UPDATE };
    update.u.learning_update.alert = alert;
    update.u.learning_update.held = SGMQ_HELD_REFLECTION;
    sgmq_confirm_t first;
    assert_int_equal (sgmq_client_publish (rrwg, NULL, &update, &first, &error), 0);
    //  A second report of the same session is stored, but the first one
    //  counts: the tracker's "held on time" is about it.
    assert_int_equal (s_publish (rrwg, NULL, &update, NULL, &error), 0);
    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    sgmq_report_t *report = sgmq_client_report (auditor, 0, 0, &error);
    assert_non_null (report);
    const sgmq_cmd_t *item;
    uint64_t held = 0;
    while (sgmq_report_next (report, &item, &error) == 1)
        if (item->cmd == SGMQ_CMD_REPORT_LEARNING && item->u.report_learning.seq == alert)
            held = item->u.report_learning.reflection_held;
    sgmq_report_destroy (&report);
    sgmq_client_destroy (&auditor);
    assert_int_equal (held, first.time);
    //  Not in the future, nor before the alert.
    update.u.learning_update.held = SGMQ_HELD_SESSION;
    update.u.learning_update.on = sgmq_time_now () + 86400000;
    assert_int_equal (s_publish (rrwg, NULL, &update, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.on");
    update.u.learning_update.on = now - 86400000;
    assert_int_equal (s_publish (rrwg, NULL, &update, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.on");
    sgmq_client_destroy (&rrwg);

    //  The timer survives a restart before it is due.
    assert_int_equal (e2e_stop (c->e2e), 0);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    sgmq_client_t *online = s_subscriber (c, c->online, 0);
    const sgmq_delivery_t *d = e2e_recv (online, 5000);
    assert_int_equal (d->seq, alert);
    s_ack (online, alert);
    for (int i = 0; i < 2; i++) {           //  both reports of the reflection
        d = e2e_recv (online, 5000);
        assert_int_equal (d->kind, SGMQ_KIND_LEARNING_UPDATE);
        s_ack (online, d->seq);
    }
    const sgmq_delivery_t *r = s_next_reminder (online, 6000);
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_SESSION_DUE);
    assert_int_equal (r->body.u.reminder.about, alert);
    assert_int_equal (r->body.u.reminder.about_kind, SGMQ_KIND_LEARNING);
    assert_string_equal (r->body.u.reminder.title, "Infant neglect");
    s_ack (online, r->seq);
    //  Once only, and no reflection reminder (it was held), even across
    //  another restart after both are due.
    assert_true (e2e_quiet (online, 2000));
    sgmq_client_destroy (&online);
    assert_int_equal (e2e_stop (c->e2e), 0);
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    online = s_subscriber (c, c->online, 0);
    assert_true (e2e_quiet (online, 1500));
    sgmq_client_destroy (&online);
    s_cast_destroy (&c);
}

//  A report's items: the seqs of each kind, in order (REPORT-END's counts
//  checked against them).
static void
s_report_seqs (sgmq_client_t *reader, uint64_t since, uint64_t *escalations,
               size_t *escalation_count, uint64_t *learning, size_t *learning_count)
{
    sgmq_error_t error;
    sgmq_report_t *report = sgmq_client_report (reader, since, 0, &error);
    assert_non_null (report);
    *escalation_count = *learning_count = 0;
    const sgmq_cmd_t *item;
    int rc;
    while ((rc = sgmq_report_next (report, &item, &error)) == 1) {
        if (item->cmd == SGMQ_CMD_REPORT_ESCALATION && *escalation_count < 8)
            escalations [(*escalation_count)++] = item->u.report_escalation.seq;
        if (item->cmd == SGMQ_CMD_REPORT_LEARNING && *learning_count < 8)
            learning [(*learning_count)++] = item->u.report_learning.seq;
        if (item->cmd == SGMQ_CMD_REPORT_END) {
            assert_int_equal (item->u.report_end.escalations, *escalation_count);
            assert_int_equal (item->u.report_end.learning, *learning_count);
        }
    }
    assert_int_equal (rc, 0);
    sgmq_report_destroy (&report);
}

static void
test_report_carries_open_items_into_the_period (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("carried", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_client_t *exec = e2e_connect (c->e2e, c->exec1);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    sgmq_error_t error;
    //  Before the period: one escalation left open, one answered, one
    //  answered only in the period; a learning alert whose sessions were
    //  both held, and one whose session is still to hold.
    uint64_t open = e2e_escalate (police, "exploitation", "Still open");
    uint64_t closed = e2e_escalate (police, "exploitation", "Answered before");
    uint64_t later = e2e_escalate (police, "exploitation", "Answered in the period");
    sgmq_body_t response = s_response (closed);
    assert_int_equal (s_publish (exec, NULL, &response, NULL, &error), 0);
    const char *groups [] = { "online-safety" };
    uint64_t now = sgmq_time_now ();
    sgmq_body_t learning = s_learning (groups, 1, now + 86400000, now + 2 * 86400000);
    uint64_t held, pending;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &held, &error), 0);
    assert_int_equal (s_publish (rrwg, NULL, &learning, &pending, &error), 0);
    sgmq_body_t update = { .kind = SGMQ_KIND_LEARNING_UPDATE };
    update.u.learning_update.alert = held;
    update.u.learning_update.held = SGMQ_HELD_SESSION;
    assert_int_equal (s_publish (rrwg, NULL, &update, NULL, &error), 0);
    update.u.learning_update.held = SGMQ_HELD_REFLECTION;
    sgmq_confirm_t last;
    assert_int_equal (sgmq_client_publish (rrwg, NULL, &update, &last, &error), 0);

    //  The period starts after all that (times are in ms: wait for the
    //  clock to pass it, at most a few ms).
    uint64_t since = last.time + 1;
    for (int i = 0; i < 1000 && sgmq_time_now () <= since; i++)
        usleep (1000);
    assert_true (sgmq_time_now () > since);
    response = s_response (later);
    assert_int_equal (s_publish (exec, NULL, &response, NULL, &error), 0);
    uint64_t raised = e2e_escalate (police, "exploitation", "Raised in the period");

    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    uint64_t escalations [8], alerts [8];
    size_t escalation_count, alert_count;
    s_report_seqs (auditor, since, escalations, &escalation_count, alerts, &alert_count);
    assert_int_equal (escalation_count, 3);
    assert_int_equal (escalations [0], open);
    assert_int_equal (escalations [1], later);
    assert_int_equal (escalations [2], raised);
    assert_int_equal (alert_count, 1);
    assert_int_equal (alerts [0], pending);
    //  Without a start, everything.
    s_report_seqs (auditor, 0, escalations, &escalation_count, alerts, &alert_count);
    assert_int_equal (escalation_count, 4);
    assert_int_equal (alert_count, 2);
    //  A period after everything still lists what is open.
    for (int i = 0; i < 1000 && sgmq_time_now () <= since + 5; i++)
        usleep (1000);
    s_report_seqs (auditor, sgmq_time_now (), escalations, &escalation_count, alerts,
                   &alert_count);
    assert_int_equal (escalation_count, 2);
    assert_int_equal (escalations [0], open);
    assert_int_equal (escalations [1], raised);
    assert_int_equal (alert_count, 1);
    sgmq_client_destroy (&auditor);
    sgmq_client_destroy (&rrwg);
    sgmq_client_destroy (&exec);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

//  A date to respond by (or hold a session by) that has already passed is
//  refused; a retry of a message stored before it passed is not.
static void
test_passed_deadlines_are_refused_but_retries_answered (void **state)
{
    if (TESTUTIL_ASAN)
        skip ();                //  the clock shift is an LD_PRELOAD
    (void) state;
    s_cast_t *c = s_cast_new ("passed", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    sgmq_body_t body = e2e_escalation ("exploitation", "Due tomorrow");
    body.u.escalation.respond_by = sgmq_time_now () + 86400000;
    sgmq_confirm_t first, again;
    sgmq_error_t error;
    assert_int_equal (sgmq_client_publish (police, "case-0001", &body, &first, &error), 0);
    sgmq_body_t late = body;
    late.u.escalation.respond_by = sgmq_time_now () - 86400000;
    assert_int_equal (s_publish (police, NULL, &late, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.respond_by");
    assert_non_null (strstr (error.reason, "has already passed"));
    const char *groups [] = { "online-safety" };
    sgmq_body_t learning = s_learning (groups, 1, sgmq_time_now () - 86400000, 0);
    assert_int_equal (s_publish (rrwg, NULL, &learning, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.session_by");
    sgmq_client_destroy (&rrwg);
    sgmq_client_destroy (&police);

    //  Two days on, the escalation's date has passed: its retry is still
    //  the stored message, a new one with that date is refused.
    assert_int_equal (e2e_stop (c->e2e), 0);
    setenv ("LD_PRELOAD", SGMQ_CLOCKSHIFT_LIB, 1);
    setenv ("SGMQ_TEST_CLOCK_SHIFT_S", "172800", 1);
    int rc = e2e_start (c->e2e, NULL);
    unsetenv ("LD_PRELOAD");
    unsetenv ("SGMQ_TEST_CLOCK_SHIFT_S");
    assert_int_equal (rc, 0);
    police = e2e_connect (c->e2e, c->police);
    assert_int_equal (sgmq_client_publish (police, "case-0001", &body, &again, &error), 0);
    assert_true (again.duplicate);
    assert_int_equal (again.seq, first.seq);
    assert_int_equal (s_publish (police, "case-0002", &body, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.respond_by");
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

//  The CSPR process's learning and reflection sessions are defaults for
//  CSPRs only: an audit's alert without dates tracks no sessions (and no
//  reminder fires for them).
static void
test_session_defaults_are_for_csprs (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("review-types", NULL);
    sgmq_client_t *online = s_subscriber (c, c->online, 0);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    const char *groups [] = { "online-safety" };
    sgmq_body_t learning = s_learning (groups, 1, 0, 0);
    uint64_t cspr, audit;
    sgmq_error_t error;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &cspr, &error), 0);
    learning.u.learning.review_type = SGMQ_REVIEW_AUDIT;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &audit, &error), 0);
    //  Learning for a group nobody is a member of reaches nobody: refused.
    const char *empty [] = { "qa-performance" };
    sgmq_body_t nobody = s_learning (empty, 1, 0, 0);
    assert_int_equal (s_publish (rrwg, NULL, &nobody, NULL, &error), SGMQ_E_BAD_VALUE);
    assert_string_equal (error.field, "body.groups");
    assert_non_null (strstr (error.reason, "nobody would receive it"));
    for (int i = 0; i < 2; i++)
        s_ack (online, e2e_recv (online, 5000)->seq);
    assert_true (e2e_quiet (online, 1500));
    sgmq_client_destroy (&rrwg);

    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    sgmq_report_t *report = sgmq_client_report (auditor, 0, 0, &error);
    assert_non_null (report);
    const sgmq_cmd_t *item;
    int seen = 0;
    while (sgmq_report_next (report, &item, &error) == 1) {
        if (item->cmd != SGMQ_CMD_REPORT_LEARNING)
            continue;
        const __typeof__ (item->u.report_learning) *l = &item->u.report_learning;
        if (l->seq == cspr) {
            assert_true (l->session_by > l->time && l->reflection_by > l->session_by);
            seen++;
        }
        if (l->seq == audit) {
            assert_int_equal (l->session_by, 0);
            assert_int_equal (l->reflection_by, 0);
            seen++;
        }
    }
    sgmq_report_destroy (&report);
    assert_int_equal (seen, 2);
    sgmq_client_destroy (&auditor);
    sgmq_client_destroy (&online);
    s_cast_destroy (&c);
}

//  A session is reminded of `learning-notice` before its date, and again
//  when the date comes without an update saying it was held.
static void
test_learning_sessions_reminded_ahead_and_when_due (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("notice", "deadlines/learning-notice", s_ms (1500), NULL);
    sgmq_client_t *online = s_subscriber (c, c->online, 0);
    sgmq_client_t *rrwg = e2e_connect (c->e2e, c->rrwg);
    const char *groups [] = { "online-safety" };
    uint64_t due = sgmq_time_now () + (uint64_t) testutil_ms (3000);
    sgmq_body_t learning = s_learning (groups, 1, due, 0);
    uint64_t alert;
    sgmq_error_t error;
    assert_int_equal (s_publish (rrwg, NULL, &learning, &alert, &error), 0);
    s_ack (online, e2e_recv (online, 5000)->seq);
    const sgmq_delivery_t *r = s_next_reminder (online, 5000);
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_SESSION_DUE);
    assert_int_equal (r->body.u.reminder.about, alert);
    assert_int_equal (r->body.u.reminder.due, due);
    assert_int_equal (r->body.u.reminder.count, 1);
    assert_true (r->time < due);                //  ahead of the date
    s_ack (online, r->seq);
    r = s_next_reminder (online, 5000);
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_SESSION_DUE);
    assert_int_equal (r->body.u.reminder.count, 2);
    assert_true (r->time >= due);               //  and when it came
    s_ack (online, r->seq);
    //  Then no more about it (the reflection is a year away).
    assert_true (e2e_quiet (online, 1500));
    sgmq_client_destroy (&rrwg);
    sgmq_client_destroy (&online);
    s_cast_destroy (&c);
}

static void
test_stalled_subscriber_holds_nobody_up (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("stalled", "deadlines/redeliver-first", "1h",
                              "deadlines/redeliver-max", "1h", NULL);
    //  exec1 subscribes and then never reads or acknowledges.
    sgmq_client_t *stalled = s_subscriber (c, c->exec1, 5);
    sgmq_client_t *exec2 = s_subscriber (c, c->exec2, 50);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    enum { COUNT = 300 };
    sgmq_body_t body = { .kind = SGMQ_KIND_ESCALATION };
    body.u.escalation.group = "exploitation";
    body.u.escalation.title = "Many";
    body.u.escalation.summary = "A summary";
    body.u.escalation.severity = SGMQ_SEVERITY_LOW;
    body.u.escalation.requested = "Note";
    body.u.escalation.respond_by = sgmq_time_now () + 86400000;
    sgmq_error_t error;
    for (int i = 0; i < COUNT; i++)
        assert_int_equal (sgmq_client_publish_send (police, NULL, &body, &error), 0);
    for (int i = 0; i < COUNT; i++) {
        sgmq_confirm_t confirm;
        assert_int_equal (sgmq_client_publish_wait (police, (int) testutil_ms (10000),
                                                    &confirm, &error), 0);
        assert_int_equal (error.code, 0);
    }
    uint64_t expected = 1;
    for (int i = 0; i < COUNT; i++) {
        const sgmq_delivery_t *d = e2e_recv (exec2, 10000);
        assert_int_equal (d->seq, expected++);
        s_ack (exec2, d->seq);
    }
    //  The stalled member's deliveries wait in the store for it.
    s_items_t items = { .count = 0 };
    sgmq_client_t *auditor = e2e_connect (c->e2e, c->auditor);
    uint64_t outstanding = 0;
    assert_int_equal (sgmq_client_pending (auditor, SGMQ_SCOPE_ALL, false, s_collect,
                                           &items, &error), 0);
    (void) outstanding;
    assert_true (items.count > 0);
    sgmq_client_destroy (&auditor);
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec2);
    sgmq_client_destroy (&stalled);
    s_cast_destroy (&c);
}

static size_t
s_count (const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr (p, needle)); p += strlen (needle))
        n++;
    return n;
}

//  Reminders fall due while the store is full (the map at its cap): the
//  broker tries again after a growing pause and says so once in a while,
//  instead of a loop at full CPU logging each try and reminders that were
//  never stored (a second review: 2 CPU-seconds and 12 MB of log in 2 s).
static void
test_due_reminders_with_a_full_store (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("full-timers", "limits/map-size-max", "2097152",
                              "deadlines/escalation-ack-by", s_ms (1500),
                              "deadlines/repeat", "1h", NULL);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    static char summary [3001];
    for (int i = 0; i < 3000; i++)
        summary [i] = "A summary of the concern, without names. " [i % 41];
    sgmq_body_t body = e2e_escalation ("exploitation", "Fill");
    body.u.escalation.summary = summary;
    bool full = false;
    for (int i = 0; i < 5000 && !full; i++) {
        sgmq_confirm_t confirm;
        sgmq_error_t error;
        if (sgmq_client_publish (police, NULL, &body, &confirm, &error))
            full = error.code == SGMQ_E_STORAGE_FULL;
    }
    assert_true (full);
    //  Until the due reminders have failed to be stored once.
    int64_t deadline = testutil_now_ms () + testutil_ms (10000);
    char *log = e2e_log (c->e2e);
    while (s_count (log, "batch not stored") < 2 && testutil_now_ms () < deadline) {
        free (log);
        zclock_sleep (50);
        log = e2e_log (c->e2e);
    }
    size_t errors = s_count (log, "batch not stored");
    size_t reminders = s_count (log, "reminder seq=");
    free (log);
    assert_true (errors >= 1);
    long hz = sysconf (_SC_CLK_TCK);
    long before = e2e_cpu_ticks (c->e2e->pid);
    zclock_sleep (1000);
    long used = e2e_cpu_ticks (c->e2e->pid) - before;
    log = e2e_log (c->e2e);
    printf ("    a second with reminders due and the store full: %.2f s of CPU, "
            "%zu more errors logged, %zu more reminders\n", (double) used / hz,
            s_count (log, "batch not stored") - errors,
            s_count (log, "reminder seq=") - reminders);
    assert_true (used < hz / 2);
    assert_true (s_count (log, "batch not stored") - errors <= 1);
    assert_int_equal (s_count (log, "reminder seq="), reminders);  //  none stored
    free (log);
    sgmq_client_destroy (&police);
    s_cast_destroy (&c);
}

//  With max-tries 1, the one delivery a member gets live is its last try:
//  PENDING shows it flagged, like one sent from the store (a second
//  review found it "delivered" for good).
static int
s_state (const sgmq_pending_item_t *item, void *arg)
{
    snprintf ((char *) arg, 32, "%s/%u", sgmq_proto_state_name (item->state),
              item->attempts);
    return 0;
}

static void
test_one_try_flags_the_live_delivery (void **state)
{
    (void) state;
    s_cast_t *c = s_cast_new ("one-try", "deadlines/max-tries", "1", NULL);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    uint64_t seq = e2e_escalate (police, "exploitation", "Live");
    assert_int_equal (e2e_recv (exec1, 5000)->seq, seq);
    char live [32] = "", stored [32] = "";
    sgmq_error_t error;
    assert_int_equal (sgmq_client_pending (exec1, SGMQ_SCOPE_MINE, false, s_state,
                                           live, &error), 0);
    sgmq_client_t *exec2 = s_subscriber (c, c->exec2, 0);
    assert_int_equal (e2e_recv (exec2, 5000)->seq, seq);
    assert_int_equal (sgmq_client_pending (exec2, SGMQ_SCOPE_MINE, false, s_state,
                                           stored, &error), 0);
    sgmq_client_destroy (&exec2);
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    s_cast_destroy (&c);
    assert_string_equal (live, "flagged/1");
    assert_string_equal (stored, "flagged/1");
}

//  A host clock that was a month ahead for a while (a VM booted with a
//  wrong clock, corrected later): message times stay in order, so new
//  messages carry the later date until the clock passes it, but deadlines
//  follow the real clock: an escalation's ack reminder comes after
//  ack-by, and its respond-by a week ahead does not pass at once (a
//  second review found both wrong). Not under AddressSanitizer, which
//  refuses a library preloaded ahead of its runtime.
static void
test_deadlines_follow_the_clock_not_stored_times (void **state)
{
    if (TESTUTIL_ASAN)
        skip ();
    (void) state;
    s_cast_t *c = s_cast_new ("clock", "deadlines/escalation-ack-by", s_ms (1500),
                              "deadlines/repeat", "1h",
                              "deadlines/redeliver-first", "1h",
                              "deadlines/redeliver-max", "1h", NULL);
    assert_int_equal (e2e_stop (c->e2e), 0);
    setenv ("LD_PRELOAD", SGMQ_CLOCKSHIFT_LIB, 1);
    setenv ("SGMQ_TEST_CLOCK_SHIFT_S", "2592000", 1);       //  30 days
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    unsetenv ("LD_PRELOAD");
    unsetenv ("SGMQ_TEST_CLOCK_SHIFT_S");
    sgmq_client_t *police = e2e_connect (c->e2e, c->police);
    //  (Its date to respond by is past the broker's clock's 30 days: one
    //  that has passed by the broker's clock is refused.)
    sgmq_body_t ahead = e2e_escalation ("exploitation", "While the clock was ahead");
    ahead.u.escalation.respond_by = sgmq_time_now () + 60ULL * 86400000;
    sgmq_error_t error;
    assert_int_equal (s_publish (police, NULL, &ahead, NULL, &error), 0);
    sgmq_client_destroy (&police);
    assert_int_equal (e2e_stop (c->e2e), 0);

    //  The clock is right again.
    assert_int_equal (e2e_start (c->e2e, NULL), 0);
    char *log = e2e_log (c->e2e);
    assert_non_null (strstr (log, "ahead of this clock: check the clock"));
    free (log);
    sgmq_client_t *exec1 = s_subscriber (c, c->exec1, 0);
    police = e2e_connect (c->e2e, c->police);
    sgmq_body_t body = e2e_escalation ("exploitation", "After the clock was put right");
    sgmq_confirm_t confirm;
    assert_int_equal (sgmq_client_publish (police, NULL, &body, &confirm, &error), 0);
    //  Stored with the later date, in order after the first.
    assert_true (confirm.time > sgmq_time_now () + 86400000ULL);
    //  Its one reminder is the ack reminder, after ack-by; not one for
    //  its respond-by, a week ahead of the real clock.
    const sgmq_delivery_t *r = NULL;
    while ((r = s_next_reminder (exec1, 10000))->body.u.reminder.about != confirm.seq) {
        //  (one about the first, sent while the clock was ahead, may come first)
        s_ack (exec1, r->seq);
    }
    assert_int_equal (r->body.u.reminder.reason, SGMQ_REASON_ACK_OVERDUE);
    s_ack (exec1, r->seq);
    int64_t deadline = testutil_now_ms () + testutil_ms (3000);
    while (testutil_now_ms () < deadline) {
        const sgmq_delivery_t *d;
        if (sgmq_client_recv (exec1, (int) (deadline - testutil_now_ms ()), &d, &error))
            break;
        if (d->kind == SGMQ_KIND_REMINDER)
            assert_false (d->body.u.reminder.about == confirm.seq
                          && d->body.u.reminder.reason == SGMQ_REASON_RESPONSE_OVERDUE);
        s_ack (exec1, d->seq);
    }
    sgmq_client_destroy (&police);
    sgmq_client_destroy (&exec1);
    s_cast_destroy (&c);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_publish_confirm_and_idempotent_refs),
        cmocka_unit_test (test_fan_out_reaches_exactly_the_members),
        cmocka_unit_test (test_offline_member_catches_up_in_order),
        cmocka_unit_test (test_restart_loses_nothing_and_keeps_acks),
        cmocka_unit_test (test_pipelined_publishes_survive_a_crash),
        cmocka_unit_test (test_pipelined_acks),
        cmocka_unit_test (test_redelivery_backs_off_then_flags),
        cmocka_unit_test (test_each_rule_is_refused_with_its_error),
        cmocka_unit_test (test_escalation_overdue_reminded_until_resolved),
        cmocka_unit_test (test_response_overdue_reminds_until_responded),
        cmocka_unit_test (test_learning_reminders_fire_once_and_updates_cancel),
        cmocka_unit_test (test_report_carries_open_items_into_the_period),
        cmocka_unit_test (test_passed_deadlines_are_refused_but_retries_answered),
        cmocka_unit_test (test_session_defaults_are_for_csprs),
        cmocka_unit_test (test_learning_sessions_reminded_ahead_and_when_due),
        cmocka_unit_test (test_stalled_subscriber_holds_nobody_up),
        cmocka_unit_test (test_due_reminders_with_a_full_store),
        cmocka_unit_test (test_one_try_flags_the_live_delivery),
        cmocka_unit_test (test_deadlines_follow_the_clock_not_stored_times),
    };
    if (sodium_init () < 0)
        return 1;
    zsys_handler_set (NULL);
    int failed = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return failed;
}

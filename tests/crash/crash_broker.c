/*  crash_broker - SIGKILL the real broker under load, many times, and
    prove that everything it confirmed survives exactly once.

    Issue 7, item 1. A deployment with three publishing systems and four
    members, each a separate process with its own client:

      - police and health raise escalations (for exploitation and for
        domestic abuse), which go to the Executive; police one at a time,
        health pipelined (libsgmq's publish_send / publish_wait, which
        sends what was not answered again after a restart);
      - the Rapid Review Working Group publishes learning alerts to the
        Executive and the exploitation sub-group, and a learning update
        for each alert it got confirmed;
      - three Executive members and the exploitation chair receive and
        acknowledge everything (the chair pipelines its acks, libsgmq's
        ack_send / ack_flush; an ack counts as on disk once a flush
        returned); the first Executive member also responds
        to every third escalation it receives (a response goes to the
        Executive and the raising group: the chair gets those to police).

    Every publish uses the publisher's own ref and is retried with the same
    ref (and the same body) until it is confirmed, across restarts. A child
    reports to the parent through a pipe, in fixed-size records written
    whole (below PIPE_BUF, so a record is never torn): each confirm (ref,
    seq, whom it is addressed to), each delivery and each ack that
    sgmq_client_ack returned 0 for (on disk).

    Meanwhile the parent kills the broker with SIGKILL a random 50..400 ms
    (scaled) after traffic resumed following the last restart (one kill in
    four does not wait for it: it lands while the clients reconnect),
    restarts it on the same port, and repeats:
    SGMQ_CRASH_CYCLES times (default 30). Then publishing stops, the members
    drain until every confirmed message is acknowledged by everyone it is
    addressed to, the broker stops with SIGTERM (exit 0) and starts once
    more, and an auditor checks the history:

      - every confirmed ref is stored exactly once, at its confirmed seq,
        with the body it was published with, and nothing else is stored
        (retries deduplicated: stored = confirmed);
      - each publisher's confirmed seqs increase in confirm order;
      - every delivery a member saw carried the message stored at that seq
        (a seq is never reused after a crash);
      - every message is acknowledged by exactly the members it is
        addressed to, every ack a member was confirmed is in the history,
        and nothing is pending for anyone;
      - the chain verifies, with a signed checkpoint at the head.

    SGMQ_CRASH_SEED replays the random delays of a run (the seed is
    printed). No ZeroMQ context and no store exists in the parent before
    the children are forked: each child makes its own client.
*/
#define _GNU_SOURCE
#include "e2e.h"
#include "sgmq_keyfile.h"
#include "sgmq_time.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  The floor of kills in the CI run; SGMQ_CRASH_CYCLES changes it.
#define S_CYCLES            30
//  A kill comes this long (scaled) after traffic resumed following the
//  previous restart (or after the restart itself: S_RECONNECT_KILL_ONE_IN).
#define S_DELAY_MIN_MS      50
#define S_DELAY_MAX_MS      400
//  One kill in this many comes without waiting for traffic to resume.
#define S_RECONNECT_KILL_ONE_IN 4
//  After a restart, every publisher has a confirm within this (scaled).
#define S_PROGRESS_MS       15000
//  The clients' timeout (scaled): a request lost with a killed broker is
//  sent again after this. Short, so that publishers do not sit out whole
//  cycles waiting for an answer that cannot come.
#define S_CLIENT_TIMEOUT_MS 1000
//  How long (scaled) a publisher keeps retrying one ref, a member one ack,
//  before the test fails: far longer than any restart.
#define S_RETRY_MS          60000
//  After the kills: publishers finish their last ref, then the members
//  have this long (scaled) to acknowledge everything.
#define S_STOP_MS           60000
#define S_DRAIN_MS          60000
#define S_EXIT_MS           20000
//  A member's receive wait, so it sees the parent's commands promptly.
#define S_RECV_MS           100
//  The first Executive member responds to every third escalation.
#define S_RESPOND_EVERY     3
//  Broker settings: clients ping every 500 ms when idle, so a member finds
//  a restarted broker (which has lost its session) within a heartbeat;
//  checkpoints every second, so kills also land around checkpoints.
#define S_HEARTBEAT         "500ms"
#define S_SESSION_TIMEOUT   "5s"
#define S_CHECKPOINT        "1s"
#define S_REF_SIZE          48
//  Broker warnings printed as they are found (all are counted).
#define S_WARNINGS_SHOWN    5
//  respond_by of the escalations: fixed before the fork, so a retried
//  body is byte for byte the one first sent.
#define S_RESPOND_IN_MS     (30ULL * 86400000)
//  Publishes the pipelining publisher keeps in flight.
#define S_PIPELINE          16
#define S_PIPELINE_RATE     400
//  Acks the pipelining member queues before it waits for them.
#define S_ACK_BATCH         32

//  --------------------------------------------------------------------------
//  The cast

typedef enum {
    S_POLICE, S_HEALTH, S_RRWG,                 //  publishers
    S_EXEC1, S_EXEC2, S_EXEC3, S_CHAIR,         //  members (EXEC1 responds)
    S_ACTORS
} s_actor_id_t;

#define S_FIRST_MEMBER  S_EXEC1
#define S_MEMBERS       (S_ACTORS - S_FIRST_MEMBER)
#define S_BIT(actor)    (1u << ((actor) - S_FIRST_MEMBER))
#define S_EXECUTIVE     (S_BIT (S_EXEC1) | S_BIT (S_EXEC2) | S_BIT (S_EXEC3))
#define S_EXPLOITATION  S_BIT (S_CHAIR)

typedef struct {
    const char *file, *name, *agency, *roles, *groups;
} s_who_t;

static const s_who_t s_cast [S_ACTORS] = {
    { "police.cert", "Police case system", "Metropolitan Police", "publisher",
      "exploitation" },
    { "health.cert", "Health safeguarding system", "Integrated Care Board",
      "publisher", "domestic-abuse" },
    { "rrwg.cert", "Rapid Review Working Group system",
      "Local Authority Safeguarding and QA", "publisher",
      "rapid-review-working-group" },
    { "exec1.cert", "Executive member (police)", "Metropolitan Police", "member",
      "executive" },
    { "exec2.cert", "Executive member (ICB)", "Integrated Care Board", "member",
      "executive" },
    { "exec3.cert", "Executive member (children's services)",
      "Local Authority Children's Services", "member", "executive" },
    { "chair.cert", "Exploitation sub-group chair",
      "Local Authority Exploitation Service", "member", "exploitation" },
};

//  --------------------------------------------------------------------------
//  Reports, child to parent: 72 bytes, far below PIPE_BUF, so each write is
//  atomic and a reader that reads whole multiples never sees half a one.

typedef struct {
    char type;                  //  see below
    uint8_t expect;             //  C: the members it is addressed to
    uint8_t duplicate;          //  C, A: the broker said "stored before"
    uint8_t kind;               //  C, D: message kind
    uint32_t count;             //  C: publishes it took; D: attempt
    uint64_t seq;
    uint64_t time;              //  C, D: when it was stored
    char text [S_REF_SIZE];     //  C, D: the ref; F: why (cut)
} __attribute__ ((packed)) s_report_t;

#define S_R_CONFIRM     'C'     //  a publish confirmed (on disk)
#define S_R_DELIVERED   'D'     //  a delivery received
#define S_R_ACKED       'A'     //  an ack confirmed (on disk)
#define S_R_STOPPED     'S'     //  no more publishes will come from it
#define S_R_EXIT        'X'     //  done, exits 0 next
#define S_R_FAILED      'F'     //  gave up: the test fails

//  Commands, parent to child: one byte each.
#define S_C_STOP_PUBLISHING 'P'
#define S_C_QUIT            'Q'

//  --------------------------------------------------------------------------
//  Bodies: a pure function of the ref, so a retry sends the same bytes,
//  and the auditor can rebuild what each stored message must hold.

typedef struct {
    sgmq_body_t body;
    char title [SGMQ_PROTO_MAX_TITLE + 1];
    const char *list [2];
} s_body_t;

static const char *s_learning_groups [] = { "executive", "exploitation" };
static uint64_t s_respond_base;

//  The ref's kind of message and its number (n, or the seq it refers to).
static sgmq_kind_t
s_ref_parse (const char *ref, uint64_t *number)
{
    static const struct {
        const char *prefix;
        sgmq_kind_t kind;
    } prefixes [] = {
        { "pol-", SGMQ_KIND_ESCALATION }, { "hlt-", SGMQ_KIND_ESCALATION },
        { "lrn-", SGMQ_KIND_LEARNING }, { "upd-", SGMQ_KIND_LEARNING_UPDATE },
        { "rsp-", SGMQ_KIND_RESPONSE },
    };
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes [0]; i++)
        if (strncmp (ref, prefixes [i].prefix, 4) == 0) {
            char *end;
            *number = strtoull (ref + 4, &end, 10);
            return *end == 0 && *number ? prefixes [i].kind : 0;
        }
    return 0;
}

static int
s_body_for (const char *ref, s_body_t *out)
{
    memset (out, 0, sizeof *out);
    uint64_t n;
    sgmq_body_t *body = &out->body;
    body->kind = s_ref_parse (ref, &n);
    switch (body->kind) {
        case SGMQ_KIND_ESCALATION: {
            sgmq_escalation_t *e = &body->u.escalation;
            e->group = ref [0] == 'p' ? "exploitation" : "domestic-abuse";
            snprintf (out->title, sizeof out->title, "Crash test escalation %s", ref);
            e->title = out->title;
            e->summary = "Return-home interviews are not shared with the panel in time.";
            e->severity = (sgmq_severity_t) (SGMQ_SEVERITY_LOW + n % 4);
            e->requested = "A decision from the Executive";
            e->respond_by = s_respond_base + n * 60000;
            e->case_ref = ref;
            return 0;
        }
        case SGMQ_KIND_LEARNING: {
            sgmq_learning_t *l = &body->u.learning;
            l->review_type = n % 2 ? SGMQ_REVIEW_CSPR : SGMQ_REVIEW_RAPID_REVIEW;
            l->review_ref = ref;
            snprintf (out->title, sizeof out->title, "Crash test learning %s", ref);
            l->title = out->title;
            l->summary = "Learning from a review, without names.";
            out->list [0] = "professional curiosity";
            out->list [1] = "Record who lives in the home";
            l->theme = (sgmq_strlist_t) { 1, &out->list [0] };
            l->recommendation = (sgmq_strlist_t) { 1, &out->list [1] };
            l->groups = (sgmq_strlist_t) { 2, s_learning_groups };
            return 0;
        }
        case SGMQ_KIND_LEARNING_UPDATE:
            body->u.learning_update.alert = n;
            body->u.learning_update.held = SGMQ_HELD_SESSION;
            body->u.learning_update.notes = ref;
            return 0;
        case SGMQ_KIND_RESPONSE:
            out->list [0] = "Circulate the protocol";
            body->u.response.to = n;
            body->u.response.decision = ref;
            body->u.response.summary = "The Executive agrees the protocol.";
            body->u.response.action = (sgmq_strlist_t) { 1, &out->list [0] };
            return 0;
        default:
            return -1;
    }
}

//  The ref a stored or delivered body carries; NULL if none (a reminder).
static const char *
s_ref_of (const sgmq_body_t *body)
{
    switch (body->kind) {
        case SGMQ_KIND_ESCALATION:      return body->u.escalation.case_ref;
        case SGMQ_KIND_LEARNING:        return body->u.learning.review_ref;
        case SGMQ_KIND_LEARNING_UPDATE: return body->u.learning_update.notes;
        case SGMQ_KIND_RESPONSE:        return body->u.response.decision;
        default:                        return NULL;
    }
}

static bool
s_str_eq (const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

static bool
s_list_eq (const sgmq_strlist_t *a, const sgmq_strlist_t *b)
{
    if (a->count != b->count)
        return false;
    for (uint32_t i = 0; i < a->count; i++)
        if (!s_str_eq (a->items [i], b->items [i]))
            return false;
    return true;
}

//  True if `got` is what `want` was published as (learning deadlines are
//  the broker's defaults for a CSPR: present, not compared; none for the
//  other reviews).
static bool
s_body_eq (const sgmq_body_t *want, const sgmq_body_t *got)
{
    if (want->kind != got->kind)
        return false;
    switch (want->kind) {
        case SGMQ_KIND_ESCALATION: {
            const sgmq_escalation_t *a = &want->u.escalation, *b = &got->u.escalation;
            return s_str_eq (a->group, b->group) && s_str_eq (a->title, b->title)
                && s_str_eq (a->summary, b->summary) && a->severity == b->severity
                && s_str_eq (a->requested, b->requested)
                && a->respond_by == b->respond_by && s_str_eq (a->case_ref, b->case_ref);
        }
        case SGMQ_KIND_LEARNING: {
            const sgmq_learning_t *a = &want->u.learning, *b = &got->u.learning;
            return a->review_type == b->review_type
                && s_str_eq (a->review_ref, b->review_ref)
                && s_str_eq (a->title, b->title) && s_str_eq (a->summary, b->summary)
                && s_list_eq (&a->theme, &b->theme)
                && s_list_eq (&a->recommendation, &b->recommendation)
                && s_list_eq (&a->groups, &b->groups)
                && (a->review_type == SGMQ_REVIEW_CSPR
                    ? b->session_by && b->reflection_by
                    : !b->session_by && !b->reflection_by);
        }
        case SGMQ_KIND_LEARNING_UPDATE: {
            const sgmq_learning_update_t *a = &want->u.learning_update;
            const sgmq_learning_update_t *b = &got->u.learning_update;
            return a->alert == b->alert && a->held == b->held && a->on == b->on
                && s_str_eq (a->notes, b->notes);
        }
        case SGMQ_KIND_RESPONSE: {
            const sgmq_response_t *a = &want->u.response, *b = &got->u.response;
            return a->to == b->to && s_str_eq (a->decision, b->decision)
                && s_str_eq (a->summary, b->summary)
                && s_list_eq (&a->action, &b->action);
        }
        default:
            return false;
    }
}

//  --------------------------------------------------------------------------
//  Children

typedef struct {
    s_actor_id_t id;
    int report_fd, control_fd;
    e2e_t *e2e;
    char *cert;
    sgmq_client_t *client;
    bool stop_publishing, quit;
} s_child_t;

static void
s_report (s_child_t *c, char type, const s_report_t *in)
{
    s_report_t r = in ? *in : (s_report_t) { 0 };
    r.type = type;
    if (write (c->report_fd, &r, sizeof r) != (ssize_t) sizeof r)
        _exit (3);
}

static void __attribute__ ((noreturn, format (printf, 2, 3)))
s_child_fail (s_child_t *c, const char *format, ...)
{
    s_report_t r = { 0 };
    va_list args;
    va_start (args, format);
    vsnprintf (r.text, sizeof r.text, format, args);
    va_end (args);
    fprintf (stderr, "crash_broker: %s: %s\n", s_cast [c->id].name, r.text);
    s_report (c, S_R_FAILED, &r);
    _exit (1);
}

//  Read the parent's commands without waiting.
static void
s_control (s_child_t *c)
{
    char commands [16];
    ssize_t got;
    while ((got = read (c->control_fd, commands, sizeof commands)) > 0)
        for (ssize_t i = 0; i < got; i++) {
            c->stop_publishing |= commands [i] == S_C_STOP_PUBLISHING;
            c->quit |= commands [i] == S_C_QUIT;
        }
    if (got == 0)               //  the parent is gone
        _exit (4);
}

//  Worth another try: the broker was away, restarting, or lost our session.
static bool
s_transient (int code)
{
    return code == SGMQ_CLIENT_E_TIMEOUT || code == SGMQ_CLIENT_E_UNREACHABLE
        || code == SGMQ_E_BAD_REQUEST || code == SGMQ_E_UNAVAILABLE
        || code == SGMQ_E_BUSY;
}

//  Connect, retrying while the broker is away.
static void
s_child_connect (s_child_t *c)
{
    sgmq_client_options_t options = {
        .broker = c->e2e->endpoint, .cert = c->cert,
        .server_cert = c->e2e->server_cert,
        .timeout = (int) testutil_ms (S_CLIENT_TIMEOUT_MS),
        .client = "crash-broker"
    };
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    sgmq_error_t error = { 0 };
    while (!c->client) {
        c->client = sgmq_client_new (&options, &error);
        if (!c->client && !s_transient (error.code))
            s_child_fail (c, "connect: %d %s", error.code, error.reason);
        if (!c->client && testutil_now_ms () > deadline)
            s_child_fail (c, "no connection in %lld ms: %d %s",
                          (long long) testutil_ms (S_RETRY_MS), error.code, error.reason);
    }
}

//  Tell the parent a publish is confirmed (on disk), after `tries`.
static void
s_report_confirm (s_child_t *c, const sgmq_confirm_t *confirm, sgmq_kind_t kind,
                  uint8_t expect, uint32_t tries)
{
    s_report_t r = {
        .expect = expect, .duplicate = confirm->duplicate, .kind = (uint8_t) kind,
        .count = tries, .seq = confirm->seq, .time = confirm->time
    };
    snprintf (r.text, sizeof r.text, "%.*s", S_REF_SIZE - 1, confirm->ref);
    s_report (c, S_R_CONFIRM, &r);
}

//  Publish `ref` until it is confirmed, then report the confirm.
static uint64_t
s_publish_sure (s_child_t *c, const char *ref, uint8_t expect)
{
    s_body_t body;
    if (s_body_for (ref, &body))
        s_child_fail (c, "no body for ref %s", ref);
    sgmq_confirm_t confirm;
    sgmq_error_t error;
    uint32_t tries = 0;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    while (true) {
        tries++;
        if (sgmq_client_publish (c->client, ref, &body.body, &confirm, &error) == 0)
            break;
        //  A refusal (409 above all: the ref stored for another body) is
        //  a failure; anything else is the broker being away.
        if (!s_transient (error.code))
            s_child_fail (c, "publish %s refused: %d %s", ref, error.code, error.reason);
        if (testutil_now_ms () > deadline)
            s_child_fail (c, "publish %s not confirmed after %u tries: %d %s", ref,
                          tries, error.code, error.reason);
    }
    if (strcmp (confirm.ref, ref) != 0 || confirm.seq == 0)
        s_child_fail (c, "confirm of %s names %s, seq %llu", ref, confirm.ref,
                      (unsigned long long) confirm.seq);
    s_report_confirm (c, &confirm, body.body.kind, expect, tries);
    return confirm.seq;
}

//  Report a confirm of a pipelined publish (a refusal fails the test).
static void
s_confirmed (s_child_t *c, const sgmq_confirm_t *confirm, const sgmq_error_t *error)
{
    if (error->code)
        s_child_fail (c, "publish %s refused: %d %s", confirm->ref, error->code,
                      error->reason);
    s_body_t body;
    if (confirm->seq == 0 || s_body_for (confirm->ref, &body))
        s_child_fail (c, "confirm of %s, seq %llu", confirm->ref,
                      (unsigned long long) confirm->seq);
    s_report_confirm (c, confirm, body.body.kind, S_EXECUTIVE, 1);
}

//  The health system pipelines its escalations (libsgmq's publish_send
//  and publish_wait, S_PIPELINE in flight) and leaves the restarts to the
//  library, which sends what was not answered again on a new session.
static void __attribute__ ((noreturn))
s_pipelined_publisher (s_child_t *c)
{
    s_child_connect (c);
    uint64_t n = 0;
    int64_t start = testutil_now_ms (), progress = start;
    while (true) {
        s_control (c);
        bool stopping = c->stop_publishing || c->quit;
        if (stopping && sgmq_client_in_flight (c->client) == 0)
            break;
        //  Paced, so that the members can still acknowledge everything in
        //  the drain: S_PIPELINE_RATE a second, in bursts.
        uint64_t allowed = (uint64_t) (testutil_now_ms () - start) * S_PIPELINE_RATE / 1000;
        if (!stopping && n >= allowed && sgmq_client_in_flight (c->client) == 0) {
            usleep (1000000 / S_PIPELINE_RATE);
            continue;
        }
        sgmq_error_t error;
        while (!stopping && n < allowed && sgmq_client_in_flight (c->client) < S_PIPELINE) {
            char ref [S_REF_SIZE];
            snprintf (ref, sizeof ref, "hlt-%llu", (unsigned long long) n + 1);
            s_body_t body;
            s_body_for (ref, &body);
            if (sgmq_client_publish_send (c->client, ref, &body.body, &error)) {
                if (!s_transient (error.code))
                    s_child_fail (c, "publish_send %s: %d %s", ref, error.code,
                                  error.reason);
                break;                  //  not queued: the same ref next time
            }
            n++;
        }
        sgmq_confirm_t confirm;
        if (sgmq_client_publish_wait (c->client, (int) testutil_ms (S_RECV_MS),
                                      &confirm, &error) == 0) {
            s_confirmed (c, &confirm, &error);
            progress = testutil_now_ms ();
        }
        else
        if (!s_transient (error.code) && error.code != SGMQ_CLIENT_E_USAGE)
            s_child_fail (c, "publish_wait: %d %s", error.code, error.reason);
        if (testutil_now_ms () - progress > testutil_ms (S_RETRY_MS))
            s_child_fail (c, "no confirm for %lld ms: %d %s",
                          (long long) testutil_ms (S_RETRY_MS), error.code, error.reason);
    }
    s_report (c, S_R_STOPPED, NULL);
    sgmq_client_destroy (&c->client);
    s_report (c, S_R_EXIT, NULL);
    _exit (0);
}

static void __attribute__ ((noreturn))
s_publisher (s_child_t *c)
{
    if (c->id == S_HEALTH)
        s_pipelined_publisher (c);
    s_child_connect (c);
    for (uint64_t n = 1; ; n++) {
        s_control (c);
        if (c->stop_publishing || c->quit)
            break;
        char ref [S_REF_SIZE];
        if (c->id == S_RRWG) {
            snprintf (ref, sizeof ref, "lrn-%llu", (unsigned long long) n);
            uint64_t alert = s_publish_sure (c, ref, S_EXECUTIVE | S_EXPLOITATION);
            s_control (c);
            if (c->stop_publishing || c->quit)
                break;
            //  The update goes to the alert's groups.
            snprintf (ref, sizeof ref, "upd-%llu", (unsigned long long) alert);
            s_publish_sure (c, ref, S_EXECUTIVE | S_EXPLOITATION);
        }
        else {
            bool police = c->id == S_POLICE;
            snprintf (ref, sizeof ref, "%s-%llu", police ? "pol" : "hlt",
                      (unsigned long long) n);
            //  An escalation goes to the Executive (PROTOCOL.md).
            s_publish_sure (c, ref, S_EXECUTIVE);
        }
    }
    s_report (c, S_R_STOPPED, NULL);
    sgmq_client_destroy (&c->client);
    s_report (c, S_R_EXIT, NULL);
    _exit (0);
}

//  Acknowledge until the broker says it is on disk.
static void
s_ack_sure (s_child_t *c, uint64_t seq)
{
    sgmq_error_t error;
    bool duplicate = false;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    while (sgmq_client_ack (c->client, seq, &duplicate, &error) != 0) {
        if (!s_transient (error.code))
            s_child_fail (c, "ack %llu refused: %d %s", (unsigned long long) seq,
                          error.code, error.reason);
        if (testutil_now_ms () > deadline)
            s_child_fail (c, "ack %llu not confirmed in time: %d %s",
                          (unsigned long long) seq, error.code, error.reason);
    }
    s_report_t r = { .duplicate = duplicate, .seq = seq };
    s_report (c, S_R_ACKED, &r);
}

//  The exploitation chair pipelines its acks (libsgmq's ack_send and
//  ack_flush): an ack counts as on disk once a flush has returned 0.
typedef struct {
    uint64_t seqs [S_ACK_BATCH];
    size_t count;
} s_acks_t;

static void
s_acks_flush (s_child_t *c, s_acks_t *queued)
{
    if (queued->count == 0)
        return;
    sgmq_error_t error;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    while (sgmq_client_ack_flush (c->client, (int) testutil_ms (S_CLIENT_TIMEOUT_MS),
                                  &error) != 0) {
        if (!s_transient (error.code))
            s_child_fail (c, "ack_flush refused: %d %s", error.code, error.reason);
        if (testutil_now_ms () > deadline)
            s_child_fail (c, "acks not confirmed in time: %d %s", error.code,
                          error.reason);
    }
    for (size_t i = 0; i < queued->count; i++) {
        s_report_t r = { .seq = queued->seqs [i] };
        s_report (c, S_R_ACKED, &r);
    }
    queued->count = 0;
}

static void
s_ack_queue (s_child_t *c, s_acks_t *queued, uint64_t seq)
{
    sgmq_error_t error;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    while (sgmq_client_ack_send (c->client, seq, &error) != 0)
        if (!s_transient (error.code) || testutil_now_ms () > deadline)
            s_child_fail (c, "ack_send %llu: %d %s", (unsigned long long) seq,
                          error.code, error.reason);
    queued->seqs [queued->count++] = seq;
    if (queued->count == S_ACK_BATCH)
        s_acks_flush (c, queued);
}

//  Each member's window (0: the broker's default, 100): the small ones
//  keep their sessions behind, refilling from the store as they ack.
static const uint32_t s_window [S_MEMBERS] = { 0, 8, 1, 0 };

static void __attribute__ ((noreturn))
s_member (s_child_t *c)
{
    s_child_connect (c);
    sgmq_error_t error;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_RETRY_MS);
    while (sgmq_client_subscribe (c->client, s_window [c->id - S_FIRST_MEMBER], NULL,
                                  &error) != 0)
        if (!s_transient (error.code) || testutil_now_ms () > deadline)
            s_child_fail (c, "subscribe: %d %s", error.code, error.reason);
    s_acks_t queued = { .count = 0 };
    //  Escalations already answered (the first Executive member).
    uint8_t *responded = NULL;
    size_t responded_size = 0;
    bool stopped = false;
    while (true) {
        s_control (c);
        if (c->id == S_EXEC1 && c->stop_publishing && !stopped) {
            s_report (c, S_R_STOPPED, NULL);
            stopped = true;
        }
        if (c->quit)
            break;
        const sgmq_delivery_t *d;
        if (sgmq_client_recv (c->client, (int) testutil_ms (S_RECV_MS), &d, &error)) {
            if (error.code == SGMQ_E_NOT_AUTHORISED || error.code == SGMQ_CLIENT_E_CERT
            ||  error.code == SGMQ_CLIENT_E_PROTOCOL)
                s_child_fail (c, "recv: %d %s", error.code, error.reason);
            s_acks_flush (c, &queued);      //  nothing more for now
            continue;
        }
        const char *ref = s_ref_of (&d->body);
        s_report_t r = {
            .kind = (uint8_t) d->kind, .count = d->attempt, .seq = d->seq,
            .time = d->time
        };
        snprintf (r.text, sizeof r.text, "%s", ref ? ref : "");
        s_report (c, S_R_DELIVERED, &r);
        uint64_t seq = d->seq;
        bool respond = c->id == S_EXEC1 && d->kind == SGMQ_KIND_ESCALATION
                    && seq % S_RESPOND_EVERY == 0;
        //  A response goes to the raising group and the Executive, but
        //  not to its sender.
        uint8_t expect = S_EXECUTIVE & ~S_BIT (S_EXEC1);
        if (respond && strcmp (d->body.u.escalation.group, "exploitation") == 0)
            expect |= S_EXPLOITATION;
        //  `d` is not valid after the next call on the client.
        if (c->id == S_CHAIR)
            s_ack_queue (c, &queued, seq);
        else
            s_ack_sure (c, seq);
        if (!respond || c->stop_publishing)
            continue;
        if (seq >= responded_size * 8) {
            size_t size = (size_t) (seq / 8 + 1) * 2;
            responded = realloc (responded, size);
            if (!responded)
                s_child_fail (c, "out of memory");
            memset (responded + responded_size, 0, size - responded_size);
            responded_size = size;
        }
        if (responded [seq / 8] & (1u << (seq % 8)))
            continue;           //  a redelivery: answered already
        char response_ref [S_REF_SIZE];
        snprintf (response_ref, sizeof response_ref, "rsp-%llu", (unsigned long long) seq);
        s_publish_sure (c, response_ref, expect);
        responded [seq / 8] |= (uint8_t) (1u << (seq % 8));
    }
    s_acks_flush (c, &queued);
    free (responded);
    sgmq_client_destroy (&c->client);
    s_report (c, S_R_EXIT, NULL);
    _exit (0);
}

//  --------------------------------------------------------------------------
//  Parent

typedef struct {
    uint8_t expect;             //  members it is addressed to (from the confirm)
    uint8_t delivered;          //  members that saw it
    uint8_t acked;              //  members whose ack was confirmed
    int8_t publisher;           //  who got it confirmed; -1: nobody yet
    char ref [S_REF_SIZE];      //  the confirmed ref, or the first delivered
    uint64_t time;              //  when it was stored, as first reported
} s_seq_t;

typedef struct {
    s_actor_id_t actor;
    uint64_t seq;
    char ref [S_REF_SIZE];
} s_confirm_t;

typedef struct {
    pid_t pid;
    int report_fd, control_fd;  //  -1 when closed
    bool stopped, exited;
    uint64_t last_seq;          //  last confirmed seq (order check)
    uint64_t confirms, deliveries, acks;
    s_report_t partial;         //  a record cut by a short read
    size_t partial_size;
} s_actor_t;

typedef struct {
    e2e_t *e2e;
    char *certs [S_ACTORS + 1];     //  + the auditor
    s_actor_t actors [S_ACTORS];
    s_seq_t *seqs;
    size_t seq_alloc;
    uint64_t max_seq;
    s_confirm_t *confirms;
    size_t confirm_count, confirm_alloc;
    uint64_t kinds [SGMQ_KIND_COUNT_];
    uint64_t duplicate_confirms, retried_publishes;
    uint64_t deliveries, redeliveries, redelivered_after_ack, acks, duplicate_acks;
    uint64_t rng;
    uint64_t warnings;          //  in the broker's logs
} s_run_t;

static s_run_t *s_current;      //  for the teardown after a failure

static uint64_t
s_random (s_run_t *run)
{
    //  xorshift64*: the same seed, the same delays, whatever libc does.
    run->rng ^= run->rng >> 12;
    run->rng ^= run->rng << 25;
    run->rng ^= run->rng >> 27;
    return run->rng * 2685821657736338717ULL;
}

static s_seq_t *
s_seq (s_run_t *run, uint64_t seq)
{
    if (seq == 0 || seq > 100000000)
        fail_msg ("a report names seq %llu", (unsigned long long) seq);
    if (seq >= run->seq_alloc) {
        size_t alloc = run->seq_alloc ? run->seq_alloc : 1024;
        while (alloc <= seq)
            alloc *= 2;
        run->seqs = realloc (run->seqs, alloc * sizeof *run->seqs);
        assert_non_null (run->seqs);
        for (size_t i = run->seq_alloc; i < alloc; i++)
            run->seqs [i] = (s_seq_t) { .publisher = -1 };
        run->seq_alloc = alloc;
    }
    if (seq > run->max_seq)
        run->max_seq = seq;
    return &run->seqs [seq];
}

//  A confirm (even a duplicate's) and every delivery give the time the
//  message was first stored.
static void
s_check_time (s_seq_t *s, const s_report_t *r, const char *what)
{
    if (s->time && s->time != r->time)
        fail_msg ("seq %llu (%s): %s says stored at %llu, before it was %llu",
                  (unsigned long long) r->seq, r->text, what,
                  (unsigned long long) r->time, (unsigned long long) s->time);
    s->time = r->time;
}

static void
s_on_confirm (s_run_t *run, s_actor_id_t actor, const s_report_t *r)
{
    s_actor_t *a = &run->actors [actor];
    s_seq_t *s = s_seq (run, r->seq);
    //  The same seq confirmed for two refs, or twice: stored twice over.
    if (s->publisher >= 0)
        fail_msg ("DUPLICATE: seq %llu confirmed as %s (%s) and as %s (%s)",
                  (unsigned long long) r->seq, s->ref, s_cast [s->publisher].name,
                  r->text, s_cast [actor].name);
    if (s->ref [0] && strcmp (s->ref, r->text) != 0)
        fail_msg ("seq %llu was delivered as %s but confirmed as %s",
                  (unsigned long long) r->seq, s->ref, r->text);
    //  A publisher waits for each confirm before the next publish.
    if (r->seq <= a->last_seq)
        fail_msg ("ORDER: %s got %s confirmed at seq %llu after seq %llu",
                  s_cast [actor].name, r->text, (unsigned long long) r->seq,
                  (unsigned long long) a->last_seq);
    a->last_seq = r->seq;
    a->confirms++;
    s_check_time (s, r, "the confirm");
    s->publisher = (int8_t) actor;
    s->expect = r->expect;
    snprintf (s->ref, sizeof s->ref, "%s", r->text);
    if (run->confirm_count == run->confirm_alloc) {
        run->confirm_alloc = run->confirm_alloc ? run->confirm_alloc * 2 : 1024;
        run->confirms = realloc (run->confirms, run->confirm_alloc * sizeof *run->confirms);
        assert_non_null (run->confirms);
    }
    s_confirm_t *c = &run->confirms [run->confirm_count++];
    c->actor = actor;
    c->seq = r->seq;
    snprintf (c->ref, sizeof c->ref, "%s", r->text);
    if (r->kind < SGMQ_KIND_COUNT_)
        run->kinds [r->kind]++;
    run->duplicate_confirms += r->duplicate;
    run->retried_publishes += r->count > 1;
}

static void
s_on_report (s_run_t *run, s_actor_id_t actor, const s_report_t *r)
{
    s_actor_t *a = &run->actors [actor];
    switch (r->type) {
        case S_R_CONFIRM:
            s_on_confirm (run, actor, r);
            break;
        case S_R_DELIVERED: {
            s_seq_t *s = s_seq (run, r->seq);
            uint8_t bit = (uint8_t) S_BIT (actor);
            //  What was delivered at a seq is what is stored there, for
            //  ever: a seq is never reused after a crash.
            if (s->ref [0] && strcmp (s->ref, r->text) != 0)
                fail_msg ("seq %llu delivered to %s as %s, but it is %s",
                          (unsigned long long) r->seq, s_cast [actor].name, r->text,
                          s->ref);
            if (!s->ref [0])
                snprintf (s->ref, sizeof s->ref, "%s", r->text);
            s_check_time (s, r, "a delivery");
            run->deliveries++;
            a->deliveries++;
            if (s->delivered & bit)
                run->redeliveries++;
            if (s->acked & bit)
                run->redelivered_after_ack++;
            s->delivered |= bit;
            break;
        }
        case S_R_ACKED: {
            s_seq_t *s = s_seq (run, r->seq);
            uint8_t bit = (uint8_t) S_BIT (actor);
            if (!(s->delivered & bit))
                fail_msg ("%s acked %llu, never delivered to it", s_cast [actor].name,
                          (unsigned long long) r->seq);
            run->acks += !(s->acked & bit);
            run->duplicate_acks += r->duplicate;
            a->acks++;
            s->acked |= bit;
            break;
        }
        case S_R_STOPPED:
            a->stopped = true;
            break;
        case S_R_EXIT:
            a->exited = true;
            break;
        case S_R_FAILED:
            fail_msg ("%s failed: %.*s", s_cast [actor].name, (int) sizeof r->text,
                      r->text);
            break;
        default:
            fail_msg ("%s sent report type %d", s_cast [actor].name, r->type);
    }
}

//  Read what the children reported, for `ms` (0: what is there now).
static void
s_pump (s_run_t *run, int64_t ms)
{
    int64_t deadline = testutil_now_ms () + ms;
    while (true) {
        struct pollfd fds [S_ACTORS];
        int ids [S_ACTORS], count = 0;
        for (int i = 0; i < S_ACTORS; i++)
            if (run->actors [i].report_fd >= 0) {
                fds [count] = (struct pollfd) { run->actors [i].report_fd, POLLIN, 0 };
                ids [count++] = i;
            }
        int64_t left = deadline - testutil_now_ms ();
        if (count == 0)
            return;             //  every child has said goodbye
        int ready = poll (fds, (nfds_t) count, left > 0 ? (int) left : 0);
        if (ready < 0 && errno != EINTR)
            fail_msg ("poll: %s", strerror (errno));
        if (ready <= 0) {
            if (left <= 0)
                return;
            continue;
        }
        for (int i = 0; i < count; i++) {
            if (!fds [i].revents)
                continue;
            s_actor_t *a = &run->actors [ids [i]];
            s_report_t reports [64];
            uint8_t *bytes = (uint8_t *) reports;
            memcpy (bytes, &a->partial, a->partial_size);
            ssize_t got = read (a->report_fd, bytes + a->partial_size,
                                sizeof reports - a->partial_size);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                //  The child is gone: fine after its exit report.
                close (a->report_fd);
                a->report_fd = -1;
                if (!a->exited)
                    fail_msg ("%s died (status %d)", s_cast [ids [i]].name,
                              e2e_wait (a->pid, S_EXIT_MS));
                continue;
            }
            size_t total = a->partial_size + (size_t) got;
            size_t whole = total / sizeof (s_report_t);
            a->partial_size = total % sizeof (s_report_t);
            memcpy (&a->partial, bytes + whole * sizeof (s_report_t), a->partial_size);
            for (size_t r = 0; r < whole; r++)
                s_on_report (run, (s_actor_id_t) ids [i], &reports [r]);
        }
    }
}

static void
s_command (s_run_t *run, int first, int last, char command)
{
    for (int i = first; i <= last; i++)
        if (write (run->actors [i].control_fd, &command, 1) != 1)
            fail_msg ("cannot command %s: %s", s_cast [i].name, strerror (errno));
}

//  True when every confirmed message is acknowledged by all it is for.
static bool
s_drained (s_run_t *run, uint64_t *missing)
{
    *missing = 0;
    for (uint64_t seq = 1; seq <= run->max_seq; seq++) {
        s_seq_t *s = &run->seqs [seq];
        if (s->publisher >= 0 && (s->acked & s->expect) != s->expect)
            (*missing)++;
    }
    return *missing == 0;
}

//  The broker's log of its last life: count its warnings (shown at the
//  end), and fail on an error (a batch not stored, a message unreadable).
static void
s_scan_log (s_run_t *run)
{
    char *log = e2e_log (run->e2e);
    assert_non_null (log);
    for (char *line = log; line && *line; ) {
        char *eol = strchr (line, '\n');
        if (eol)
            *eol = 0;
        if (strstr (line, "sgmq-broker error: "))
            fail_msg ("the broker logged: %s", line);
        if (strstr (line, "sgmq-broker warning: ")) {
            if (run->warnings < S_WARNINGS_SHOWN)
                fprintf (stderr, "crash_broker: the broker logged: %s\n", line);
            run->warnings++;
        }
        line = eol ? eol + 1 : NULL;
    }
    free (log);
}

//  Wait until every publisher has had a confirm, and some member an ack,
//  since now.
static void
s_await_progress (s_run_t *run, int cycle)
{
    uint64_t confirms [S_FIRST_MEMBER];
    for (int i = 0; i < S_FIRST_MEMBER; i++)
        confirms [i] = run->actors [i].confirms;
    uint64_t acks = run->acks;
    int64_t deadline = testutil_now_ms () + testutil_ms (S_PROGRESS_MS);
    while (true) {
        bool moved = run->acks > acks;
        for (int i = 0; i < S_FIRST_MEMBER; i++)
            moved &= run->actors [i].confirms > confirms [i];
        if (moved)
            return;
        if (testutil_now_ms () > deadline)
            fail_msg ("cycle %d: no traffic within %lld ms of the restart", cycle,
                      (long long) testutil_ms (S_PROGRESS_MS));
        s_pump (run, 10);
    }
}

//  Who is missing what, when the drain fails.
static void
s_print_missing (s_run_t *run)
{
    for (int m = S_FIRST_MEMBER; m < S_ACTORS; m++) {
        uint8_t bit = (uint8_t) S_BIT (m);
        uint64_t never = 0, unacked = 0, first = 0, last = 0;
        for (uint64_t seq = 1; seq <= run->max_seq; seq++) {
            s_seq_t *s = &run->seqs [seq];
            if (s->publisher < 0 || !(s->expect & bit) || (s->acked & bit))
                continue;
            never += !(s->delivered & bit);
            unacked += (s->delivered & bit) != 0;
            first = first ? first : seq;
            last = seq;
        }
        fprintf (stderr, "crash_broker: %s: %llu never delivered, %llu delivered but "
                 "not acked, seqs %llu..%llu; %llu deliveries, %llu acks\n",
                 s_cast [m].name, (unsigned long long) never,
                 (unsigned long long) unacked, (unsigned long long) first,
                 (unsigned long long) last,
                 (unsigned long long) run->actors [m].deliveries,
                 (unsigned long long) run->actors [m].acks);
    }
}

static void
s_fork_actor (s_run_t *run, s_actor_id_t id)
{
    int report [2], control [2];
    assert_int_equal (pipe2 (report, O_CLOEXEC), 0);
    assert_int_equal (pipe2 (control, O_CLOEXEC | O_NONBLOCK), 0);
    fflush (NULL);
    pid_t pid = fork ();
    assert_true (pid >= 0);
    if (pid == 0) {
        //  Die with the parent, even if it fails half-way.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () == 1)
            _exit (5);
        for (int i = 0; i < (int) id; i++) {
            close (run->actors [i].report_fd);
            close (run->actors [i].control_fd);
        }
        close (report [0]);
        close (control [1]);
        s_child_t child = {
            .id = id, .report_fd = report [1], .control_fd = control [0],
            .e2e = run->e2e, .cert = run->certs [id]
        };
        if (id < S_FIRST_MEMBER)
            s_publisher (&child);
        else
            s_member (&child);
    }
    close (report [1]);
    close (control [0]);
    run->actors [id] = (s_actor_t) {
        .pid = pid, .report_fd = report [0], .control_fd = control [1]
    };
}

//  --------------------------------------------------------------------------
//  The audit, on the restarted broker

typedef struct {
    uint64_t seq;
    char ref [S_REF_SIZE];
} s_stored_t;

static int
s_stored_cmp (const void *a, const void *b)
{
    return strcmp (((const s_stored_t *) a)->ref, ((const s_stored_t *) b)->ref);
}

static int
s_count_pending (const sgmq_pending_item_t *item, void *arg)
{
    uint64_t *count = arg;
    if (*count < 5)
        fprintf (stderr, "pending: seq %llu for %s, state %d\n",
                 (unsigned long long) item->seq, item->recipient, item->state);
    (*count)++;
    return 0;
}

static s_actor_id_t
s_member_named (const char *name)
{
    for (int i = S_FIRST_MEMBER; i < S_ACTORS; i++)
        if (strcmp (s_cast [i].name, name) == 0)
            return (s_actor_id_t) i;
    return S_ACTORS;
}

//  Replay everything and check it against what the children reported.
//  Returns how many messages are stored.
static uint64_t
s_audit (s_run_t *run, sgmq_client_t *auditor)
{
    sgmq_error_t error;
    sgmq_replay_t *replay = sgmq_client_replay (auditor, NULL, &error);
    if (!replay)
        fail_msg ("replay: %d %s", error.code, error.reason);
    s_stored_t *stored = calloc (run->max_seq + 16, sizeof *stored);
    assert_non_null (stored);
    size_t count = 0, alloc = run->max_seq + 16;
    uint64_t reminders = 0;
    const sgmq_replay_item_t *item;
    int rc;
    while ((rc = sgmq_replay_next (replay, &item, &error)) == 1) {
        if (item->body.kind == 0)
            fail_msg ("seq %llu: body does not decode", (unsigned long long) item->seq);
        if (item->kind == SGMQ_KIND_REMINDER) {
            reminders++;
            continue;
        }
        const char *ref = s_ref_of (&item->body);
        if (!ref || strlen (ref) >= S_REF_SIZE)
            fail_msg ("seq %llu: no ref in its body", (unsigned long long) item->seq);
        s_seq_t *s = item->seq < run->seq_alloc ? &run->seqs [item->seq] : NULL;
        //  Everything stored was confirmed: every publisher retried its
        //  last ref until confirmed.
        if (!s || s->publisher < 0)
            fail_msg ("seq %llu (%s) is stored but was never confirmed",
                      (unsigned long long) item->seq, ref);
        if (strcmp (s->ref, ref) != 0)
            fail_msg ("seq %llu holds %s, but %s was confirmed there",
                      (unsigned long long) item->seq, ref, s->ref);
        if (item->time != s->time)
            fail_msg ("seq %llu (%s) is stored at time %llu, confirmed at %llu",
                      (unsigned long long) item->seq, ref,
                      (unsigned long long) item->time, (unsigned long long) s->time);
        if (strcmp (item->from, s_cast [s->publisher].name) != 0)
            fail_msg ("seq %llu (%s) is from %s, not %s", (unsigned long long) item->seq,
                      ref, item->from, s_cast [s->publisher].name);
        s_body_t want;
        if (s_body_for (ref, &want) || !s_body_eq (&want.body, &item->body))
            fail_msg ("seq %llu (%s): the stored body is not the one published",
                      (unsigned long long) item->seq, ref);
        //  Acks: exactly the members it is addressed to (drained), and
        //  every ack a member was confirmed.
        uint8_t acked = 0;
        for (uint32_t i = 0; i < item->ack_count; i++) {
            s_actor_id_t m = s_member_named (item->acks [i].by);
            if (m == S_ACTORS || !(s->expect & S_BIT (m)))
                fail_msg ("seq %llu (%s) acknowledged by %s, who is not a recipient",
                          (unsigned long long) item->seq, ref, item->acks [i].by);
            acked |= (uint8_t) S_BIT (m);
        }
        if ((s->acked & ~acked) != 0)
            fail_msg ("ACK LOST: seq %llu (%s): acks confirmed 0x%x, stored 0x%x",
                      (unsigned long long) item->seq, ref, s->acked, acked);
        if (acked != s->expect)
            fail_msg ("seq %llu (%s): acknowledged by 0x%x, addressed to 0x%x",
                      (unsigned long long) item->seq, ref, acked, s->expect);
        assert_true (count < alloc);
        stored [count].seq = item->seq;
        snprintf (stored [count].ref, sizeof stored [count].ref, "%s", ref);
        count++;
    }
    if (rc != 0)
        fail_msg ("replay: %d %s", error.code, error.reason);
    sgmq_replay_destroy (&replay);
    if (reminders)
        fail_msg ("%llu reminders: no deadline should pass in this test",
                  (unsigned long long) reminders);
    //  Each ref once (no retry stored twice), and each confirmed ref there.
    qsort (stored, count, sizeof *stored, s_stored_cmp);
    for (size_t i = 1; i < count; i++)
        if (strcmp (stored [i - 1].ref, stored [i].ref) == 0)
            fail_msg ("DUPLICATE: %s is stored at seq %llu and at seq %llu",
                      stored [i].ref, (unsigned long long) stored [i - 1].seq,
                      (unsigned long long) stored [i].seq);
    for (size_t i = 0; i < run->confirm_count; i++) {
        const s_confirm_t *c = &run->confirms [i];
        s_stored_t key = { 0 };
        snprintf (key.ref, sizeof key.ref, "%s", c->ref);
        s_stored_t *found = bsearch (&key, stored, count, sizeof *stored, s_stored_cmp);
        if (!found)
            fail_msg ("LOST: %s was confirmed at seq %llu and is not stored", c->ref,
                      (unsigned long long) c->seq);
        if (found->seq != c->seq)
            fail_msg ("%s was confirmed at seq %llu but is stored at %llu", c->ref,
                      (unsigned long long) c->seq, (unsigned long long) found->seq);
    }
    //  Every seq a member saw is one that stayed.
    for (uint64_t seq = 1; seq <= run->max_seq; seq++)
        if (run->seqs [seq].delivered && run->seqs [seq].publisher < 0)
            fail_msg ("seq %llu (%s) was delivered but is not in the history",
                      (unsigned long long) seq, run->seqs [seq].ref);
    free (stored);
    //  Nothing unacknowledged for anyone.
    uint64_t pending = 0;
    if (sgmq_client_pending (auditor, SGMQ_SCOPE_ALL, false, s_count_pending, &pending,
                             &error))
        fail_msg ("pending: %d %s", error.code, error.reason);
    if (pending)
        fail_msg ("%llu deliveries are still unacknowledged", (unsigned long long) pending);
    return count;
}

//  --------------------------------------------------------------------------

static int
s_teardown (void **state)
{
    (void) state;
    s_run_t *run = s_current;
    if (!run)
        return 0;
    //  A failure left things running: stop our own processes by pid.
    for (int i = 0; i < S_ACTORS; i++)
        if (run->actors [i].pid > 0) {
            kill (run->actors [i].pid, SIGKILL);
            waitpid (run->actors [i].pid, NULL, 0);
        }
    if (run->e2e) {
        char *log = e2e_log (run->e2e);
        size_t len = log ? strlen (log) : 0;
        fprintf (stderr, "crash_broker: deployment kept in %s; the broker's log "
                 "ends:\n%s\n", run->e2e->dir, log ? log + (len > 4000 ? len - 4000 : 0)
                                                   : "");
        free (log);
        e2e_kill (run->e2e);
    }
    s_current = NULL;
    return 0;
}

static void
test_crash_broker_under_load (void **state)
{
    (void) state;
    signal (SIGPIPE, SIG_IGN);
    int64_t start = testutil_now_ms ();
    int cycles = S_CYCLES;
    const char *env = getenv ("SGMQ_CRASH_CYCLES");
    if (env)
        cycles = atoi (env);
    assert_true (cycles >= 1);
    uint64_t seed = (uint64_t) time (NULL) ^ (uint64_t) getpid ();
    env = getenv ("SGMQ_CRASH_SEED");
    if (env)
        seed = strtoull (env, NULL, 10);
    print_message ("crash_broker: seed %llu (SGMQ_CRASH_SEED=%llu replays the delays), "
                   "%d cycles\n", (unsigned long long) seed, (unsigned long long) seed,
                   cycles);

    s_run_t *run = calloc (1, sizeof *run);
    assert_non_null (run);
    s_current = run;
    run->rng = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < S_ACTORS; i++)
        run->actors [i] = (s_actor_t) { .report_fd = -1, .control_fd = -1 };
    run->e2e = e2e_new ("crash-broker",
                        "limits/heartbeat", S_HEARTBEAT,
                        "limits/session-timeout", S_SESSION_TIMEOUT,
                        "deadlines/checkpoint", S_CHECKPOINT, NULL);
    e2e_t *e2e = run->e2e;
    for (int i = 0; i < S_ACTORS; i++)
        run->certs [i] = e2e_principal (e2e, s_cast [i].file, s_cast [i].name,
                                        s_cast [i].agency, s_cast [i].roles,
                                        s_cast [i].groups);
    run->certs [S_ACTORS] = e2e_principal (e2e, "auditor.cert", "Independent scrutineer",
                                           "Safeguarding Partnership", "auditor", NULL);
    assert_int_equal (e2e_start (e2e, NULL), 0);
    //  The same port across restarts: the clients reconnect by themselves.
    e2e_config_set (e2e, "sgmq/endpoint", e2e->endpoint);
    char endpoint [sizeof e2e->endpoint];
    snprintf (endpoint, sizeof endpoint, "%s", e2e->endpoint);
    s_respond_base = sgmq_time_now () + S_RESPOND_IN_MS;

    //  Fork before anything here makes a ZeroMQ context.
    for (int i = 0; i < S_ACTORS; i++)
        s_fork_actor (run, (s_actor_id_t) i);

    //  The kills. Most come once every publisher has had a confirm and
    //  some member an ack since the restart, so they land in full traffic
    //  (and the clients prove they recover from every restart); the rest
    //  come while the clients are still reconnecting and resubscribing.
    int under_load = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        if (s_random (run) % S_RECONNECT_KILL_ONE_IN != 0) {
            s_await_progress (run, cycle);
            under_load++;
        }
        int64_t delay = S_DELAY_MIN_MS
                      + (int64_t) (s_random (run) % (S_DELAY_MAX_MS - S_DELAY_MIN_MS + 1));
        s_pump (run, testutil_ms (delay));
        e2e_kill (e2e);
        s_scan_log (run);
        int status = 0;
        if (e2e_start (e2e, &status) != 0)
            fail_msg ("cycle %d: the broker did not restart (exit %d)", cycle, status);
        if (strcmp (e2e->endpoint, endpoint) != 0)
            fail_msg ("cycle %d: the broker moved from %s to %s", cycle, endpoint,
                      e2e->endpoint);
    }
    int64_t kills_done = testutil_now_ms ();

    //  Publishers finish their last ref; the Executive member its response.
    s_command (run, 0, S_EXEC1, S_C_STOP_PUBLISHING);
    int64_t deadline = testutil_now_ms () + testutil_ms (S_STOP_MS);
    while (true) {
        bool all = true;
        for (int i = 0; i <= S_EXEC1; i++)
            all &= run->actors [i].stopped;
        if (all)
            break;
        if (testutil_now_ms () > deadline)
            fail_msg ("the publishers did not stop in time");
        s_pump (run, 50);
    }
    //  Then everything confirmed reaches everyone it is for.
    deadline = testutil_now_ms () + testutil_ms (S_DRAIN_MS);
    uint64_t missing;
    while (!s_drained (run, &missing)) {
        if (testutil_now_ms () > deadline) {
            s_print_missing (run);
            fail_msg ("after %lld ms, %llu confirmed messages are not yet acknowledged "
                      "by all their recipients", (long long) testutil_ms (S_DRAIN_MS),
                      (unsigned long long) missing);
        }
        s_pump (run, 50);
    }
    int64_t drained = testutil_now_ms ();
    s_command (run, S_FIRST_MEMBER, S_ACTORS - 1, S_C_QUIT);
    deadline = testutil_now_ms () + testutil_ms (S_EXIT_MS);
    for (int i = 0; i < S_ACTORS; i++) {
        while (!run->actors [i].exited) {
            if (testutil_now_ms () > deadline)
                fail_msg ("%s did not exit in time", s_cast [i].name);
            s_pump (run, 50);
        }
    }
    for (int i = 0; i < S_ACTORS; i++) {
        s_actor_t *a = &run->actors [i];
        int status = e2e_wait (a->pid, S_EXIT_MS);
        a->pid = 0;
        if (status != 0)
            fail_msg ("%s exited %d", s_cast [i].name, status);
        if (a->report_fd >= 0)
            close (a->report_fd);
        close (a->control_fd);
        a->report_fd = a->control_fd = -1;
    }

    //  A clean stop, then the audit on a fresh start.
    int status = e2e_stop (e2e);
    if (status != 0)
        fail_msg ("the broker's SIGTERM exit is %d", status);
    s_scan_log (run);
    assert_int_equal (e2e_start (e2e, NULL), 0);
    sgmq_client_t *auditor = e2e_connect (e2e, run->certs [S_ACTORS]);
    uint64_t stored = s_audit (run, auditor);
    assert_int_equal (stored, run->confirm_count);
    uint8_t signing_pk [crypto_sign_PUBLICKEYBYTES];
    char why [256];
    char *pub = malloc (strlen (e2e->dir) + 16);
    sprintf (pub, "%s/signing.pub", e2e->dir);
    if (sgmq_keyfile_read_signing_public (pub, signing_pk, why))
        fail_msg ("%s: %s", pub, why);
    free (pub);
    sgmq_verify_t verify;
    sgmq_error_t error;
    if (sgmq_client_verify (auditor, signing_pk, &verify, NULL, NULL, &error))
        fail_msg ("verify: %d %s", error.code, error.reason);
    if (!verify.intact || !verify.checkpoint_checked)
        fail_msg ("verify: %s at %llu: %s", verify.intact ? "unsigned" : "BROKEN",
                  (unsigned long long) verify.bad_seq, verify.reason);
    assert_int_equal (verify.count, stored);
    assert_int_equal (verify.head_seq, stored);
    assert_int_equal (verify.checkpoint_seq, stored);
    sgmq_client_destroy (&auditor);

    int64_t end = testutil_now_ms ();
    print_message (
        "crash_broker: %d SIGKILL cycles (%d in full traffic) in %.1f s; "
        "confirmed %zu (escalations %llu, responses %llu, learning %llu, updates %llu), "
        "stored %llu, lost 0, duplicates 0; retries deduplicated %llu (publishes "
        "retried %llu); acks confirmed %llu, acks lost 0, duplicate acks %llu; "
        "deliveries %llu, redeliveries seen %llu (%llu after the ack); "
        "drain %.1f s; chain intact, checkpoint at %llu; broker warnings %llu; "
        "total %.1f s\n",
        cycles, under_load, (double) (kills_done - start) / 1000.0, run->confirm_count,
        (unsigned long long) run->kinds [SGMQ_KIND_ESCALATION],
        (unsigned long long) run->kinds [SGMQ_KIND_RESPONSE],
        (unsigned long long) run->kinds [SGMQ_KIND_LEARNING],
        (unsigned long long) run->kinds [SGMQ_KIND_LEARNING_UPDATE],
        (unsigned long long) stored, (unsigned long long) run->duplicate_confirms,
        (unsigned long long) run->retried_publishes, (unsigned long long) run->acks,
        (unsigned long long) run->duplicate_acks, (unsigned long long) run->deliveries,
        (unsigned long long) run->redeliveries,
        (unsigned long long) run->redelivered_after_ack,
        (double) (drained - kills_done) / 1000.0,
        (unsigned long long) verify.checkpoint_seq, (unsigned long long) run->warnings,
        (double) (end - start) / 1000.0);
    //  Something must have happened between the kills for the test to mean
    //  anything.
    assert_true (run->confirm_count > 0);
    assert_true (run->acks > 0);

    s_current = NULL;
    e2e_destroy (&run->e2e);
    for (int i = 0; i <= S_ACTORS; i++)
        free (run->certs [i]);
    free (run->seqs);
    free (run->confirms);
    free (run);
}

int
main (void)
{
    assert_true (sodium_init () >= 0);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_teardown (test_crash_broker_under_load, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}

/*  =========================================================================
    sgmq_tracker - the Escalation Tracker, as HTML and CSV

    The broker sends what it knows (tracking records, acknowledgements);
    this module only arranges it for people: a summary, two charts drawn as
    inline SVG (escalations per month by severity; how long each agency
    takes to acknowledge learning), and the two tables the Executive reads.
    Everything a reader sees is computed here from the items, so the CSV
    and the HTML always agree.
    =========================================================================
*/
#include "sgmq_tracker.h"
#include "sgmq_json.h"
#include "sgmq_time.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

//  Chart geometry, in SVG user units (about pixels at 96 dpi): wide enough
//  for A4 portrait at the page's margins.
#define S_CHART_WIDTH   680
#define S_CHART_HEIGHT  220
#define S_CHART_LEFT    40
#define S_CHART_BOTTOM  40
#define S_BAR_HEIGHT    18
#define S_LABEL_WIDTH   230
//  At most this many months in the per-month chart (the latest ones).
#define S_MAX_MONTHS    36
//  Widest bar of the month chart, so one month does not fill the page.
#define S_BAR_MAX       48
#define S_MS_PER_HOUR   3600000.0

typedef struct {
    uint64_t seq, time, respond_by, ack_by, acked_at, responded_at, response_seq;
    char *from, *agency, *group, *title, *acked_by, *decision, *summary;
    sgmq_severity_t severity;
    sgmq_esc_status_t status;
    bool overdue_ack, overdue_response;
    uint32_t reminders;
} s_escalation_t;

typedef struct {
    char *name, *agency;
    char **groups;
    uint32_t group_count;
    uint64_t acked_at;
} s_recipient_t;

typedef struct {
    uint64_t seq, time, session_by, session_held, reflection_by, reflection_held;
    char *from, *agency, *title, *review_ref;
    sgmq_review_type_t review_type;
    char **groups;
    uint32_t group_count;
    s_recipient_t *recipients;
    uint32_t recipient_count;
} s_learning_t;

struct _sgmq_tracker_t {
    uint64_t since, until, now;
    s_escalation_t *escalations;
    size_t escalation_count, escalation_capacity;
    s_learning_t *learning;
    size_t learning_count, learning_capacity;
    bool failed;                //  out of memory while copying
};

//  A tally: acknowledged of total, for an agency or a group.
typedef struct {
    const char *key;
    uint32_t acked, total;
    double *delays;             //  hours to acknowledge, for medians
    size_t delay_count;
} s_tally_t;

//  --------------------------------------------------------------------------
//  Keeping items

static char *
s_dup (sgmq_tracker_t *self, const char *text)
{
    if (!text)
        return NULL;
    char *copy = strdup (text);
    if (!copy)
        self->failed = true;
    return copy;
}

static char **
s_dup_list (sgmq_tracker_t *self, const sgmq_strlist_t *list)
{
    char **items = calloc (list->count + 1, sizeof *items);
    if (!items) {
        self->failed = true;
        return NULL;
    }
    for (uint32_t i = 0; i < list->count; i++)
        items [i] = s_dup (self, list->items [i]);
    return items;
}

static void
s_free_list (char **items, uint32_t count)
{
    for (uint32_t i = 0; items && i < count; i++)
        free (items [i]);
    free (items);
}

static int
s_grow (void **items, size_t *capacity, size_t need, size_t size)
{
    if (need <= *capacity)
        return 0;
    size_t bigger = *capacity ? *capacity * 2 : 16;
    void *grown = realloc (*items, bigger * size);
    if (!grown)
        return -1;
    *items = grown;
    *capacity = bigger;
    return 0;
}

sgmq_tracker_t *
sgmq_tracker_new (uint64_t since, uint64_t until, uint64_t now)
{
    sgmq_tracker_t *self = calloc (1, sizeof *self);
    if (self) {
        self->since = since;
        self->until = until;
        self->now = now;
    }
    return self;
}

void
sgmq_tracker_destroy (sgmq_tracker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sgmq_tracker_t *self = *self_p;
    for (size_t i = 0; i < self->escalation_count; i++) {
        s_escalation_t *e = &self->escalations [i];
        free (e->from);
        free (e->agency);
        free (e->group);
        free (e->title);
        free (e->acked_by);
        free (e->decision);
        free (e->summary);
    }
    free (self->escalations);
    for (size_t i = 0; i < self->learning_count; i++) {
        s_learning_t *l = &self->learning [i];
        free (l->from);
        free (l->agency);
        free (l->title);
        free (l->review_ref);
        s_free_list (l->groups, l->group_count);
        for (uint32_t r = 0; r < l->recipient_count; r++) {
            free (l->recipients [r].name);
            free (l->recipients [r].agency);
            s_free_list (l->recipients [r].groups, l->recipients [r].group_count);
        }
        free (l->recipients);
    }
    free (self->learning);
    free (self);
    *self_p = NULL;
}

int
sgmq_tracker_add (sgmq_tracker_t *self, const sgmq_cmd_t *item)
{
    if (item->cmd == SGMQ_CMD_REPORT_ESCALATION) {
        if (s_grow ((void **) &self->escalations, &self->escalation_capacity,
                    self->escalation_count + 1, sizeof *self->escalations))
            return -1;
        const __typeof__ (item->u.report_escalation) *in = &item->u.report_escalation;
        s_escalation_t *e = &self->escalations [self->escalation_count++];
        memset (e, 0, sizeof *e);
        e->seq = in->seq;
        e->time = in->time;
        e->respond_by = in->respond_by;
        e->ack_by = in->ack_by;
        e->acked_at = in->acked_at;
        e->responded_at = in->responded_at;
        e->response_seq = in->response_seq;
        e->from = s_dup (self, in->from);
        e->agency = s_dup (self, in->agency);
        e->group = s_dup (self, in->group);
        e->title = s_dup (self, in->title);
        e->acked_by = s_dup (self, in->acked_by);
        e->decision = s_dup (self, in->decision);
        e->summary = s_dup (self, in->response_summary);
        e->severity = in->severity;
        e->status = in->status;
        e->overdue_ack = in->overdue_ack;
        e->overdue_response = in->overdue_response;
        e->reminders = in->reminders;
    }
    else
    if (item->cmd == SGMQ_CMD_REPORT_LEARNING) {
        if (s_grow ((void **) &self->learning, &self->learning_capacity,
                    self->learning_count + 1, sizeof *self->learning))
            return -1;
        const __typeof__ (item->u.report_learning) *in = &item->u.report_learning;
        s_learning_t *l = &self->learning [self->learning_count++];
        memset (l, 0, sizeof *l);
        l->seq = in->seq;
        l->time = in->time;
        l->session_by = in->session_by;
        l->session_held = in->session_held;
        l->reflection_by = in->reflection_by;
        l->reflection_held = in->reflection_held;
        l->from = s_dup (self, in->from);
        l->agency = s_dup (self, in->agency);
        l->title = s_dup (self, in->title);
        l->review_ref = s_dup (self, in->review_ref);
        l->review_type = in->review_type;
        l->groups = s_dup_list (self, &in->groups);
        l->group_count = in->groups.count;
        l->recipients = calloc (in->recipient_count + 1, sizeof *l->recipients);
        if (!l->recipients)
            return -1;
        for (uint32_t r = 0; r < in->recipient_count; r++) {
            const sgmq_recipient_t *from = &in->recipients [r];
            s_recipient_t *to = &l->recipients [r];
            to->name = s_dup (self, from->name);
            to->agency = s_dup (self, from->agency);
            to->groups = s_dup_list (self, &from->groups);
            to->group_count = from->groups.count;
            to->acked_at = from->acked_at;
            l->recipient_count++;
        }
    }
    return self->failed ? -1 : 0;
}

size_t
sgmq_tracker_escalations (sgmq_tracker_t *self)
{
    return self->escalation_count;
}

size_t
sgmq_tracker_learning (sgmq_tracker_t *self)
{
    return self->learning_count;
}

//  --------------------------------------------------------------------------
//  Figures

static bool
s_in_group (const s_recipient_t *r, const char *group)
{
    for (uint32_t g = 0; g < r->group_count; g++)
        if (strcmp (r->groups [g], group) == 0)
            return true;
    return false;
}

//  Find or add the tally for `key` among `count` (at most `max`); NULL
//  when it is new and there is no room.
static s_tally_t *
s_tally (s_tally_t *tallies, size_t *count, size_t max, const char *key)
{
    for (size_t i = 0; i < *count; i++)
        if (strcmp (tallies [i].key, key) == 0)
            return &tallies [i];
    if (*count == max)
        return NULL;
    tallies [*count] = (s_tally_t) { .key = key };
    return &tallies [(*count)++];
}

//  Acknowledged of total, per agency, for one alert.
static void
s_agency_counts (const s_learning_t *l, s_tally_t *tallies, size_t *count, size_t max)
{
    for (uint32_t r = 0; r < l->recipient_count; r++) {
        s_tally_t *t = s_tally (tallies, count, max, l->recipients [r].agency);
        if (t) {
            t->total++;
            t->acked += l->recipients [r].acked_at != 0;
        }
    }
}

//  Acknowledged of total per agency for one alert: one tally per agency
//  among its recipients, as many as there are (caller frees; NULL with
//  *count 0 when out of memory).
static s_tally_t *
s_alert_agencies (const s_learning_t *l, size_t *count)
{
    *count = 0;
    s_tally_t *tallies = calloc (l->recipient_count + 1, sizeof *tallies);
    if (tallies)
        s_agency_counts (l, tallies, count, l->recipient_count);
    return tallies;
}

//  Acknowledged of total among the alert's recipients in `group`.
static void
s_group_counts (const s_learning_t *l, const char *group, uint32_t *in, uint32_t *acked)
{
    *in = *acked = 0;
    for (uint32_t r = 0; r < l->recipient_count; r++)
        if (s_in_group (&l->recipients [r], group)) {
            (*in)++;
            *acked += l->recipients [r].acked_at != 0;
        }
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double
s_median (double *values, size_t count)
{
    if (!count)
        return 0;
    qsort (values, count, sizeof *values, s_cmp_double);
    return count % 2 ? values [count / 2]
                     : (values [count / 2 - 1] + values [count / 2]) / 2;
}

//  "on time", "late", "overdue", "due" for a session deadline; "held" or
//  "no date set" for a session without one (reviews other than CSPRs).
static const char *
s_session_state (uint64_t by, uint64_t held, uint64_t now)
{
    if (!by)
        return held ? "held" : "no date set";
    if (held)
        return held <= by ? "held on time" : "held late";
    return now > by ? "overdue" : "due";
}

//  Whether an escalation is overdue now, and which way.
static const char *
s_overdue_now (const s_escalation_t *e, uint64_t now)
{
    if (e->status == SGMQ_ESC_RAISED && now > e->ack_by)
        return "not acknowledged";
    if (e->status != SGMQ_ESC_RESPONDED && e->respond_by && now > e->respond_by)
        return "no response";
    return NULL;
}

typedef struct {
    size_t raised, by_severity [SGMQ_SEVERITY_COUNT_];
    size_t escalations_carried, learning_published, learning_carried;
    size_t acked_on_time, ack_due, responded, responded_on_time, response_due, overdue_now;
    size_t recipients, recipients_acked;
    size_t sessions_due, sessions_on_time, reflections_due, reflections_on_time;
} s_summary_t;

//  Whether an item stored at `time` came before the period: the broker
//  sends those only while they are still open at its start (PROTOCOL.md
//  12.1), and they are reported beside the period's own.
static bool
s_carried (const sgmq_tracker_t *self, uint64_t time)
{
    return self->since && time < self->since;
}

//  Whether a deadline counts in this period's rates: it was met, or it
//  passed unmet, within the period (and by now). So each deadline counts
//  once, in the papers of the period it fell in, however long its item is
//  carried from one period to the next.
static bool
s_due_in_period (const sgmq_tracker_t *self, uint64_t by, uint64_t met)
{
    if (!by)
        return false;
    uint64_t at = met && met <= by ? met : by;
    uint64_t end = self->until && self->until < self->now ? self->until : self->now;
    return at >= self->since && at <= end;
}

static void
s_summarise (sgmq_tracker_t *self, s_summary_t *sum)
{
    memset (sum, 0, sizeof *sum);
    //  Counts are of the period's own items (one carried in was counted in
    //  the papers of its own period), rates of the deadlines that fell in
    //  the period, overdue now of everything listed.
    for (size_t i = 0; i < self->escalation_count; i++) {
        s_escalation_t *e = &self->escalations [i];
        sum->overdue_now += s_overdue_now (e, self->now) != NULL;
        //  A response before any acknowledgement meets the acknowledgement's
        //  deadline too.
        bool responded = e->status == SGMQ_ESC_RESPONDED;
        uint64_t acked = e->acked_at ? e->acked_at : responded ? e->responded_at : 0;
        if (s_due_in_period (self, e->ack_by, acked)) {
            sum->ack_due++;
            sum->acked_on_time += acked && !e->overdue_ack;
        }
        if (s_due_in_period (self, e->respond_by, e->responded_at)) {
            sum->response_due++;
            sum->responded_on_time += responded && !e->overdue_response;
        }
        if (s_carried (self, e->time)) {
            sum->escalations_carried++;
            continue;
        }
        sum->raised++;
        if (e->severity > 0 && e->severity < SGMQ_SEVERITY_COUNT_)
            sum->by_severity [e->severity]++;
        sum->responded += responded;
    }
    for (size_t i = 0; i < self->learning_count; i++) {
        s_learning_t *l = &self->learning [i];
        if (s_due_in_period (self, l->session_by, l->session_held)) {
            sum->sessions_due++;
            sum->sessions_on_time += l->session_held && l->session_held <= l->session_by;
        }
        if (s_due_in_period (self, l->reflection_by, l->reflection_held)) {
            sum->reflections_due++;
            sum->reflections_on_time += l->reflection_held
                                     && l->reflection_held <= l->reflection_by;
        }
        if (s_carried (self, l->time)) {
            sum->learning_carried++;
            continue;
        }
        sum->learning_published++;
        sum->recipients += l->recipient_count;
        for (uint32_t r = 0; r < l->recipient_count; r++)
            sum->recipients_acked += l->recipients [r].acked_at != 0;
    }
}

//  --------------------------------------------------------------------------
//  HTML

//  `text` escaped for HTML; a character people cannot see but that changes
//  what they see (sgmq_text_hidden) shown as "<U+202E>", so that a title
//  cannot reorder the papers' text around it.
static void
s_html (FILE *out, const char *text)
{
    for (const char *p = text ? text : ""; *p; p++) {
        size_t len;
        uint32_t hidden = sgmq_text_hidden (p, &len);
        if (hidden) {
            fprintf (out, "&lt;U+%04X&gt;", hidden);
            p += len - 1;
            continue;
        }
        switch (*p) {
            case '&':  fputs ("&amp;", out); break;
            case '<':  fputs ("&lt;", out); break;
            case '>':  fputs ("&gt;", out); break;
            case '"':  fputs ("&quot;", out); break;
            case '\'': fputs ("&#39;", out); break;
            case '\n': fputs ("<br>", out); break;
            default:   fputc (*p, out);
        }
    }
}

//  "2026-07-01 00:30 BST" (UK time, as the papers are read), or "-" for 0.
static const char *
s_when (uint64_t ms, char *buf)
{
    return ms ? sgmq_time_format_uk (ms, buf) : "-";
}

static const char *s_severity_colour [SGMQ_SEVERITY_COUNT_] = {
    "#999", "#7fb77e", "#f2c14e", "#e07a2f", "#b8262b"
};

//  Month index (years * 12 + month - 1) of a time's UK date.
static int
s_month (uint64_t ms)
{
    char text [SGMQ_TIME_TEXT_SIZE];
    sgmq_time_format (sgmq_time_uk_local (ms), text);
    return atoi (text) * 12 + atoi (text + 5) - 1;
}

static void
s_chart_months (sgmq_tracker_t *self, FILE *out)
{
    //  The period's own escalations: those carried forward come first.
    size_t start = 0;
    while (start < self->escalation_count && s_carried (self, self->escalations [start].time))
        start++;
    if (start == self->escalation_count) {
        fputs ("<p class=\"note\">No escalations raised in this period.</p>\n", out);
        return;
    }
    int first = s_month (self->escalations [start].time);
    int last = s_month (self->escalations [self->escalation_count - 1].time);
    if (last - first + 1 > S_MAX_MONTHS)
        first = last - S_MAX_MONTHS + 1;
    int months = last - first + 1;
    size_t counts [S_MAX_MONTHS][SGMQ_SEVERITY_COUNT_];
    memset (counts, 0, sizeof counts);
    size_t peak = 1;
    for (size_t i = start; i < self->escalation_count; i++) {
        int m = s_month (self->escalations [i].time) - first;
        sgmq_severity_t severity = self->escalations [i].severity;
        if (m >= 0 && severity > 0 && severity < SGMQ_SEVERITY_COUNT_)
            counts [m][severity]++;
    }
    for (int m = 0; m < months; m++) {
        size_t total = 0;
        for (int s = 1; s < SGMQ_SEVERITY_COUNT_; s++)
            total += counts [m][s];
        if (total > peak)
            peak = total;
    }
    int plot_w = S_CHART_WIDTH - S_CHART_LEFT - 10;
    int plot_h = S_CHART_HEIGHT - S_CHART_BOTTOM - 10;
    double slot = (double) plot_w / months;
    double bar = slot * 0.6 < S_BAR_MAX ? slot * 0.6 : S_BAR_MAX;
    fprintf (out, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
             "role=\"img\" aria-label=\"Escalations per month by severity\">\n",
             S_CHART_WIDTH, S_CHART_HEIGHT + 20, S_CHART_WIDTH, S_CHART_HEIGHT + 20);
    //  Axis and a gridline per count step.
    size_t step = peak <= 10 ? 1 : (peak + 9) / 10;
    for (size_t v = 0; v <= peak; v += step) {
        double y = 10 + plot_h - (double) v * plot_h / (double) peak;
        fprintf (out, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                 "<text x=\"%d\" y=\"%.1f\" class=\"axis\" text-anchor=\"end\">%zu</text>\n",
                 S_CHART_LEFT, y, S_CHART_WIDTH - 10, y, S_CHART_LEFT - 4, y + 3, v);
    }
    static const char *names [] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    for (int m = 0; m < months; m++) {
        double x = S_CHART_LEFT + m * slot + (slot - bar) / 2;
        double y = 10 + plot_h;
        size_t total = 0;
        for (int s = 1; s < SGMQ_SEVERITY_COUNT_; s++) {
            if (!counts [m][s])
                continue;
            double h = (double) counts [m][s] * plot_h / (double) peak;
            y -= h;
            total += counts [m][s];
            fprintf (out, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                     "fill=\"%s\"><title>%s: %zu</title></rect>\n", x, y, bar, h,
                     s_severity_colour [s], sgmq_proto_severity_name (s), counts [m][s]);
        }
        if (total)
            fprintf (out, "<text x=\"%.1f\" y=\"%.1f\" class=\"value\" "
                     "text-anchor=\"middle\">%zu</text>\n", x + bar / 2, y - 3, total);
        int month = (first + m) % 12, year = (first + m) / 12;
        fprintf (out, "<text x=\"%.1f\" y=\"%d\" class=\"axis\" text-anchor=\"middle\">"
                 "%s %d</text>\n", x + bar / 2, 10 + plot_h + 14, names [month], year);
    }
    //  Legend.
    double lx = S_CHART_LEFT;
    for (int s = 1; s < SGMQ_SEVERITY_COUNT_; s++) {
        fprintf (out, "<rect x=\"%.0f\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                 "<text x=\"%.0f\" y=\"%d\" class=\"axis\">%s</text>\n", lx,
                 S_CHART_HEIGHT + 2, s_severity_colour [s], lx + 14, S_CHART_HEIGHT + 11,
                 sgmq_proto_severity_name (s));
        lx += 90;
    }
    fputs ("</svg>\n", out);
}

//  Tallies of learning acknowledgements by agency, across all alerts.
//  Returns the number of tallies; the caller frees each delays array.
static size_t
s_agency_tallies (sgmq_tracker_t *self, s_tally_t *tallies, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < self->learning_count; i++) {
        s_learning_t *l = &self->learning [i];
        if (s_carried (self, l->time))
            continue;           //  counted in its own period's papers
        for (uint32_t r = 0; r < l->recipient_count; r++) {
            s_recipient_t *rec = &l->recipients [r];
            s_tally_t *t = s_tally (tallies, &count, max, rec->agency);
            if (!t)
                continue;
            t->total++;
            if (!rec->acked_at)
                continue;
            t->acked++;
            double *grown = realloc (t->delays, (t->delay_count + 1) * sizeof *grown);
            if (grown) {
                t->delays = grown;
                t->delays [t->delay_count++] =
                    rec->acked_at > l->time ? (double) (rec->acked_at - l->time) / S_MS_PER_HOUR : 0;
            }
        }
    }
    return count;
}

//  Hours as people say them: minutes under an hour, days over two.
static const char *
s_duration (double hours, char *buf, size_t size)
{
    if (hours < 1)
        snprintf (buf, size, "%.0f min", hours * 60);
    else
    if (hours < 48)
        snprintf (buf, size, "%.1f hours", hours);
    else
        snprintf (buf, size, "%.1f days", hours / 24);
    return buf;
}

static void
s_chart_agencies (sgmq_tracker_t *self, FILE *out, s_tally_t *tallies, size_t count)
{
    if (!count) {
        fputs ("<p class=\"note\">No learning alerts in this period.</p>\n", out);
        return;
    }
    double peak = 0;
    for (size_t i = 0; i < count; i++) {
        double median = s_median (tallies [i].delays, tallies [i].delay_count);
        if (median > peak)
            peak = median;
    }
    if (peak <= 0)
        peak = 1;
    //  Room on the right for "12.5 hours median, 10 of 12 acknowledged".
    int plot_w = S_CHART_WIDTH - S_LABEL_WIDTH - 230;
    int height = (int) count * (S_BAR_HEIGHT + 6) + 10;
    fprintf (out, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
             "role=\"img\" aria-label=\"Time to acknowledge learning, by agency\">\n",
             S_CHART_WIDTH, height, S_CHART_WIDTH, height);
    for (size_t i = 0; i < count; i++) {
        double median = s_median (tallies [i].delays, tallies [i].delay_count);
        int y = 5 + (int) i * (S_BAR_HEIGHT + 6);
        double w = tallies [i].delay_count ? median / peak * plot_w : 0;
        fprintf (out, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">",
                 S_LABEL_WIDTH - 6, y + 13);
        s_html (out, tallies [i].key);
        fprintf (out, "</text><rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" "
                 "fill=\"#4a7ab5\"/><text x=\"%.1f\" y=\"%d\" class=\"value\">",
                 S_LABEL_WIDTH, y, w, S_BAR_HEIGHT, S_LABEL_WIDTH + w + 5, y + 13);
        if (tallies [i].delay_count) {
            char span [32];
            fprintf (out, "%s median, %u of %u acknowledged",
                     s_duration (median, span, sizeof span), tallies [i].acked,
                     tallies [i].total);
        }
        else
            fprintf (out, "none of %u acknowledged", tallies [i].total);
        fputs ("</text>\n", out);
    }
    fputs ("</svg>\n", out);
    (void) self;
}

static void
s_percent (FILE *out, size_t part, size_t whole)
{
    if (whole)
        fprintf (out, "%zu of %zu (%.0f%%)", part, whole, 100.0 * (double) part / (double) whole);
    else
        fputs ("none", out);
}

//  A session's table cell: its date, its state and when it was held.
static void
s_session_cell (FILE *out, uint64_t by, uint64_t held, uint64_t now)
{
    char a [SGMQ_TIME_TEXT_SIZE], b [SGMQ_TIME_TEXT_SIZE];
    const char *state = s_session_state (by, held, now);
    const char *style = strstr (state, "on time") ? "ok"
                      : strstr (state, "late") || strcmp (state, "overdue") == 0 ? "late" : "";
    fputs ("<td>", out);
    if (by)
        fprintf (out, "by %s<br>", s_when (by, a));
    fprintf (out, "<span class=\"%s\">%s</span>", style, state);
    if (held)
        fprintf (out, " %s", s_when (held, b));
    fputs ("</td>", out);
}

static const char *s_style =
    "@page { size: A4; margin: 14mm 12mm; }\n"
    "body { font: 10pt/1.35 \"DejaVu Sans\", Arial, sans-serif; color: #111; margin: 0; }\n"
    "h1 { font-size: 16pt; margin: 0 0 2mm; }\n"
    "h2 { font-size: 12.5pt; margin: 6mm 0 2mm; page-break-after: avoid; }\n"
    "p.meta, p.note { color: #444; margin: 0 0 2mm; }\n"
    "table { border-collapse: collapse; width: 100%; margin-bottom: 3mm; }\n"
    "th, td { border: 1px solid #999; padding: 1.5mm 2mm; vertical-align: top; text-align: left; }\n"
    "th { background: #e8e8e8; }\n"
    "tr { page-break-inside: avoid; }\n"
    "td.num { text-align: right; white-space: nowrap; }\n"
    ".late, .overdue { color: #a4161a; font-weight: bold; }\n"
    ".ok { color: #1b6b2f; }\n"
    ".sev-critical, .sev-high { font-weight: bold; }\n"
    "svg.chart { display: block; max-width: 100%; height: auto; margin: 2mm 0 4mm; }\n"
    "svg .grid { stroke: #ddd; stroke-width: 1; }\n"
    "svg .axis { font-size: 10px; fill: #333; }\n"
    "svg .value { font-size: 10px; fill: #111; }\n"
    "ul.tally { margin: 0; padding-left: 4mm; }\n";

int
sgmq_tracker_write_html (sgmq_tracker_t *self, FILE *out)
{
    char a [SGMQ_TIME_TEXT_SIZE], b [SGMQ_TIME_TEXT_SIZE], c [SGMQ_TIME_TEXT_SIZE];
    s_summary_t sum;
    s_summarise (self, &sum);
    fprintf (out, "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<title>Escalation Tracker</title>\n<style>\n%s</style>\n</head>\n<body>\n",
             s_style);
    fputs ("<h1>Escalation Tracker</h1>\n<p class=\"meta\">Escalations from the groups "
           "to the Executive, the Executive's responses, and the learning from reviews, ",
           out);
    fprintf (out, "from %s to %s. Produced %s from the broker's records.</p>\n",
             self->since ? s_when (self->since, a) : "the first record",
             self->until ? s_when (self->until, b) : "now", s_when (self->now, c));

    fputs ("<h2>Summary</h2>\n<table>\n", out);
    fprintf (out, "<tr><th>Escalations raised in the period</th><td>%zu (", sum.raised);
    for (int s = SGMQ_SEVERITY_COUNT_ - 1; s >= 1; s--)
        fprintf (out, "%s%zu %s", s == SGMQ_SEVERITY_COUNT_ - 1 ? "" : ", ",
                 sum.by_severity [s], sgmq_proto_severity_name (s));
    fputs (")</td></tr>\n", out);
    if (self->since)
        fprintf (out, "<tr><th>Raised before the period and still open at its start"
                 "</th><td>%zu</td></tr>\n", sum.escalations_carried);
    fputs ("<tr><th>Acknowledged (or responded to) by the Executive within "
           "the deadline, of those due in the period</th><td>", out);
    s_percent (out, sum.acked_on_time, sum.ack_due);
    fputs ("</td></tr>\n<tr><th>Responded to</th><td>", out);
    s_percent (out, sum.responded, sum.raised);
    fputs ("</td></tr>\n<tr><th>Responded to by the date requested, of those due in the "
           "period</th><td>", out);
    s_percent (out, sum.responded_on_time, sum.response_due);
    fprintf (out, "</td></tr>\n<tr><th>Overdue now</th><td%s>%zu</td></tr>\n",
             sum.overdue_now ? " class=\"overdue\"" : "", sum.overdue_now);
    fprintf (out, "<tr><th>Learning alerts published in the period</th><td>%zu</td></tr>\n",
             sum.learning_published);
    if (self->since)
        fprintf (out, "<tr><th>Learning alerts from before the period with a session "
                 "still to hold at its start</th><td>%zu</td></tr>\n", sum.learning_carried);
    fputs ("<tr><th>Learning acknowledged by its recipients</th><td>", out);
    s_percent (out, sum.recipients_acked, sum.recipients);
    fputs ("</td></tr>\n<tr><th>Learning sessions held on time, of those due in the "
           "period</th><td>", out);
    s_percent (out, sum.sessions_on_time, sum.sessions_due);
    fputs ("</td></tr>\n<tr><th>Reflection sessions held on time, of those due in the "
           "period</th><td>", out);
    s_percent (out, sum.reflections_on_time, sum.reflections_due);
    fputs ("</td></tr>\n</table>\n", out);

    fputs ("<h2>Escalations per month, by severity</h2>\n", out);
    s_chart_months (self, out);
    fputs ("<h2>Time to acknowledge learning, by agency</h2>\n", out);
    s_tally_t *tallies = calloc (SGMQ_PROTO_MAX_ACKS, sizeof *tallies);
    size_t tally_count = tallies ? s_agency_tallies (self, tallies, SGMQ_PROTO_MAX_ACKS) : 0;
    s_chart_agencies (self, out, tallies, tally_count);
    for (size_t i = 0; i < tally_count; i++)
        free (tallies [i].delays);
    free (tallies);

    fputs ("<h2>Escalations to the Executive</h2>\n", out);
    if (!self->escalation_count)
        fputs ("<p class=\"note\">None in this period.</p>\n", out);
    else
        fputs ("<table>\n<tr><th>#</th><th>Raised</th><th>Group</th><th>Title</th>"
               "<th>Severity</th><th>Acknowledged</th><th>Responded</th>"
               "<th>Executive response</th><th>Deadlines</th></tr>\n", out);
    for (size_t i = 0; i < self->escalation_count; i++) {
        s_escalation_t *e = &self->escalations [i];
        fprintf (out, "<tr><td class=\"num\">%llu</td><td>%s%s<br>", (unsigned long long) e->seq,
                 s_when (e->time, a), s_carried (self, e->time) ? " (before the period)" : "");
        s_html (out, e->from);
        if (e->agency && *e->agency) {
            fputs ("<br>", out);
            s_html (out, e->agency);
        }
        fputs ("</td><td>", out);
        s_html (out, e->group);
        fputs ("</td><td>", out);
        s_html (out, e->title);
        fprintf (out, "</td><td class=\"sev-%s\">%s</td><td>",
                 sgmq_proto_severity_name (e->severity), sgmq_proto_severity_name (e->severity));
        if (e->acked_at) {
            fprintf (out, "%s<br>", s_when (e->acked_at, a));
            s_html (out, e->acked_by);
        }
        else
            fputs (e->status == SGMQ_ESC_RESPONDED
                   ? "no separate acknowledgement: responded" : "not yet", out);
        fprintf (out, "</td><td>%s</td><td>", e->responded_at ? s_when (e->responded_at, a)
                                                               : "not yet");
        if (e->decision) {
            fputs ("<b>", out);
            s_html (out, e->decision);
            fputs ("</b><br>", out);
            s_html (out, e->summary);
        }
        fprintf (out, "</td><td>ack by %s%s<br>respond by %s%s", s_when (e->ack_by, a),
                 e->overdue_ack ? " <span class=\"late\">(late)</span>" : "",
                 s_when (e->respond_by, b),
                 e->overdue_response ? " <span class=\"late\">(late)</span>" : "");
        const char *now = s_overdue_now (e, self->now);
        if (now)
            fprintf (out, "<br><span class=\"overdue\">overdue: %s</span>", now);
        if (e->reminders)
            fprintf (out, "<br>%u reminder%s", e->reminders, e->reminders == 1 ? "" : "s");
        fputs ("</td></tr>\n", out);
    }
    if (self->escalation_count)
        fputs ("</table>\n", out);

    fputs ("<h2>Learning from reviews</h2>\n", out);
    if (!self->learning_count)
        fputs ("<p class=\"note\">None in this period.</p>\n", out);
    else
        fputs ("<table>\n<tr><th>#</th><th>Published</th><th>Learning</th>"
               "<th>Acknowledged</th><th>By agency</th><th>By group</th>"
               "<th>Learning session</th><th>Reflection</th></tr>\n", out);
    for (size_t i = 0; i < self->learning_count; i++) {
        s_learning_t *l = &self->learning [i];
        uint32_t acked = 0;
        for (uint32_t r = 0; r < l->recipient_count; r++)
            acked += l->recipients [r].acked_at != 0;
        fprintf (out, "<tr><td class=\"num\">%llu</td><td>%s%s<br>",
                 (unsigned long long) l->seq, s_when (l->time, a),
                 s_carried (self, l->time) ? " (before the period)" : "");
        s_html (out, l->from);
        if (l->agency && *l->agency) {
            fputs ("<br>", out);
            s_html (out, l->agency);
        }
        fputs ("</td><td>", out);
        s_html (out, l->title);
        fprintf (out, "<br>%s ", sgmq_proto_review_name (l->review_type));
        s_html (out, l->review_ref);
        fprintf (out, "</td><td class=\"num\">%u of %u</td><td><ul class=\"tally\">",
                 acked, l->recipient_count);
        size_t count = 0;
        s_tally_t *local = s_alert_agencies (l, &count);
        for (size_t t = 0; t < count; t++) {
            fputs ("<li>", out);
            s_html (out, local [t].key);
            fprintf (out, ": %u of %u</li>", local [t].acked, local [t].total);
        }
        free (local);
        fputs ("</ul></td><td><ul class=\"tally\">", out);
        for (uint32_t g = 0; g < l->group_count; g++) {
            uint32_t in, in_acked;
            s_group_counts (l, l->groups [g], &in, &in_acked);
            fputs ("<li>", out);
            s_html (out, l->groups [g]);
            fprintf (out, ": %u of %u</li>", in_acked, in);
        }
        fputs ("</ul></td>", out);
        s_session_cell (out, l->session_by, l->session_held, self->now);
        s_session_cell (out, l->reflection_by, l->reflection_held, self->now);
        fputs ("</tr>\n", out);
    }
    if (self->learning_count)
        fputs ("</table>\n", out);
    fputs ("<p class=\"meta\">Times are UK times (GMT, or BST in summer). \"Late\": "
           "a deadline was missed, even if met afterwards. Case references and the text of escalations and learning "
           "stay in sgmq; this report shows their titles, and the Executive's "
           "decisions and response summaries in full.</p>\n</body>\n</html>\n", out);
    return ferror (out) ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  CSV

static const char *
s_iso (uint64_t ms, char *buf)
{
    if (!ms)
        return "";
    return sgmq_time_format (ms, buf);
}

int
sgmq_tracker_write_csv (sgmq_tracker_t *self, FILE *out)
{
    char a [SGMQ_TIME_TEXT_SIZE], b [SGMQ_TIME_TEXT_SIZE], c [SGMQ_TIME_TEXT_SIZE];
    fputs ("record,seq,time,from,group,title,severity_or_review,status,acknowledged_at,"
           "acknowledged_by,responded_at,decision,response_summary,ack_by,respond_by,"
           "late_ack,late_response,overdue_now,reminders,agency,recipients,acknowledged,"
           "session_by,session_held,reflection_by,reflection_held,before_period\n", out);
    for (size_t i = 0; i < self->escalation_count; i++) {
        s_escalation_t *e = &self->escalations [i];
        fprintf (out, "escalation,%llu,%s,", (unsigned long long) e->seq, s_iso (e->time, a));
        sgmq_csv_write_field (out, e->from);
        fputc (',', out);
        sgmq_csv_write_field (out, e->group);
        fputc (',', out);
        sgmq_csv_write_field (out, e->title);
        fprintf (out, ",%s,%s,%s,", sgmq_proto_severity_name (e->severity),
                 sgmq_proto_esc_status_name (e->status), s_iso (e->acked_at, b));
        sgmq_csv_write_field (out, e->acked_by);
        fprintf (out, ",%s,", s_iso (e->responded_at, c));
        sgmq_csv_write_field (out, e->decision);
        fputc (',', out);
        sgmq_csv_write_field (out, e->summary);
        const char *now = s_overdue_now (e, self->now);
        fprintf (out, ",%s,", s_iso (e->ack_by, a));
        fprintf (out, "%s,%s,%s,%s,%u,", s_iso (e->respond_by, b),
                 e->overdue_ack ? "yes" : "no", e->overdue_response ? "yes" : "no",
                 now ? now : "", e->reminders);
        sgmq_csv_write_field (out, e->agency);
        fprintf (out, ",,,,,,,%s\n", s_carried (self, e->time) ? "yes" : "no");
    }
    for (size_t i = 0; i < self->learning_count; i++) {
        s_learning_t *l = &self->learning [i];
        uint32_t acked = 0;
        for (uint32_t r = 0; r < l->recipient_count; r++)
            acked += l->recipients [r].acked_at != 0;
        fprintf (out, "learning,%llu,%s,", (unsigned long long) l->seq, s_iso (l->time, a));
        sgmq_csv_write_field (out, l->from);
        fputc (',', out);
        char *groups = NULL;
        size_t size = 0;
        FILE *buffer = open_memstream (&groups, &size);
        for (uint32_t g = 0; buffer && g < l->group_count; g++)
            fprintf (buffer, "%s%s", g ? ";" : "", l->groups [g]);
        if (buffer)
            fclose (buffer);
        sgmq_csv_write_field (out, groups);
        free (groups);
        fputc (',', out);
        sgmq_csv_write_field (out, l->title);
        char review [SGMQ_PROTO_MAX_NAME * 2];
        snprintf (review, sizeof review, "%s %s", sgmq_proto_review_name (l->review_type),
                  l->review_ref);
        fputc (',', out);
        sgmq_csv_write_field (out, review);
        //  Fields 8 to 19 are the escalation's; then agency, recipients,
        //  acknowledged.
        fputs (",,,,,,,,,,,,,", out);
        sgmq_csv_write_field (out, l->agency);
        fprintf (out, ",%u,%u,", l->recipient_count, acked);
        fprintf (out, "%s,", s_iso (l->session_by, a));
        fprintf (out, "%s,", s_iso (l->session_held, b));
        fprintf (out, "%s,", s_iso (l->reflection_by, c));
        fprintf (out, "%s,%s\n", s_iso (l->reflection_held, a),
                 s_carried (self, l->time) ? "yes" : "no");
        //  Acknowledgements by agency, then by target group.
        size_t count = 0;
        s_tally_t *local = s_alert_agencies (l, &count);
        for (size_t t = 0; t < count; t++) {
            fprintf (out, "learning-agency,%llu,,,,,,,,,,,,,,,,,,", (unsigned long long) l->seq);
            sgmq_csv_write_field (out, local [t].key);
            fprintf (out, ",%u,%u,,,,,\n", local [t].total, local [t].acked);
        }
        free (local);
        for (uint32_t g = 0; g < l->group_count; g++) {
            uint32_t in, in_acked;
            s_group_counts (l, l->groups [g], &in, &in_acked);
            fprintf (out, "learning-group,%llu,,,", (unsigned long long) l->seq);
            sgmq_csv_write_field (out, l->groups [g]);
            fprintf (out, ",,,,,,,,,,,,,,,,%u,%u,,,,,\n", in, in_acked);
        }
    }
    return ferror (out) ? -1 : 0;
}

/*  =========================================================================
    sgmq_tracker - the Escalation Tracker: a self-contained HTML report
    (and the same figures as CSV) for the papers of an Executive meeting

    The partnership circulates the tracker with the papers for every
    Executive meeting: every escalation in the period with its title,
    raising group, severity, raised / acknowledged / responded times, the
    response and whether it was overdue; and every learning alert with who
    has acknowledged it, by agency and group, and whether its learning and
    reflection sessions were held on time.

    Feed it the broker's REPORT-ESCALATION and REPORT-LEARNING items (it
    copies what it keeps), then write. The HTML has no scripts and fetches
    nothing: styles and the charts (inline SVG) are in the page, and it
    prints on A4.
    =========================================================================
*/
#ifndef SGMQ_TRACKER_H_INCLUDED
#define SGMQ_TRACKER_H_INCLUDED

#include "sgmq_proto.h"

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _sgmq_tracker_t sgmq_tracker_t;

//  A tracker for the period [since, until] (ms UTC; 0: open), as seen at
//  `now` (what counts as overdue now). NULL if out of memory.
sgmq_tracker_t *
    sgmq_tracker_new (uint64_t since, uint64_t until, uint64_t now);

void
    sgmq_tracker_destroy (sgmq_tracker_t **self_p);

//  Add a REPORT-ESCALATION or REPORT-LEARNING item (others are ignored).
//  0, or -1 if out of memory.
int
    sgmq_tracker_add (sgmq_tracker_t *self, const sgmq_cmd_t *item);

//  Counts added so far.
size_t sgmq_tracker_escalations (sgmq_tracker_t *self);
size_t sgmq_tracker_learning (sgmq_tracker_t *self);

//  Write the HTML page. 0, or -1 on a write error.
int
    sgmq_tracker_write_html (sgmq_tracker_t *self, FILE *out);

//  Write the CSV: one row per escalation, per learning alert, and per
//  (learning alert, agency) and (learning alert, group) acknowledgement
//  count, with a `record` column saying which. 0 or -1.
int
    sgmq_tracker_write_csv (sgmq_tracker_t *self, FILE *out);

#ifdef __cplusplus
}
#endif

#endif

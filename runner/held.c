/* held.c - the jobs this instance holds a lease on, and the names they point at.
 *
 * DESIGN: the control loop renews exactly the leases in this set, so a job the process no
 * longer tracks is never renewed. An id is normally held at one attempt; it is held at
 * two only while the handler of an older attempt, whose lease was lost, has not returned
 * yet and the job was claimed again meanwhile. The map points at the newest attempt, and
 * that rare case is a scan (counted by `superseded`, so the common case never scans). */
#include "held.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *held_intern(held_set *s, const char *name)
{
    for (size_t i = 0; i < s->nnames; i++)
        if (strcmp(s->names[i], name) == 0)
            return s->names[i];
    s->names = xrealloc(s->names, (s->nnames + 1) * sizeof *s->names);
    s->names[s->nnames] = xstrdup(name);
    return s->names[s->nnames++];
}

held_job *held_find(held_set *s, int64_t id, int attempt)
{
    size_t i;
    if (!idmap_get(&s->newest, id, &i))
        return NULL;
    if (attempt < 0 || s->jobs[i].attempt == attempt)
        return &s->jobs[i];
    for (i = 0; i < s->n && s->superseded > 0; i++)
        if (s->jobs[i].id == id && s->jobs[i].attempt == attempt)
            return &s->jobs[i];
    return NULL;
}

void held_add(held_set *s, const job *j, int64_t sent_ms)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->jobs = xrealloc(s->jobs, s->cap * sizeof *s->jobs);
    }
    size_t older;
    if (idmap_get(&s->newest, j->id, &older))
        s->superseded++;
    idmap_put(&s->newest, j->id, s->n);
    s->jobs[s->n++] = (held_job){
        .id = j->id, .attempt = j->attempt, .kind = held_intern(s, j->kind), .renewed_ms = sent_ms};
}

void held_drop(held_set *s, int64_t id, int attempt)
{
    held_job *h = held_find(s, id, attempt);
    if (!h)
        return;
    size_t i = (size_t)(h - s->jobs), mapped = SIZE_MAX, moved;
    idmap_get(&s->newest, id, &mapped);
    s->jobs[i] = s->jobs[--s->n];
    /* the last entry moved into slot i: its map entry follows it */
    if (i < s->n && idmap_get(&s->newest, s->jobs[i].id, &moved) && moved == s->n)
        idmap_put(&s->newest, s->jobs[i].id, i);
    if (mapped != i) {
        s->superseded--; /* an older attempt went */
        return;
    }
    idmap_del(&s->newest, id);
    if (s->superseded == 0)
        return;
    /* an older attempt is still held: the newest of those becomes the mapped one */
    size_t newest = SIZE_MAX;
    for (size_t k = 0; k < s->n; k++)
        if (s->jobs[k].id == id &&
            (newest == SIZE_MAX || s->jobs[k].attempt > s->jobs[newest].attempt))
            newest = k;
    if (newest != SIZE_MAX) {
        idmap_put(&s->newest, id, newest);
        s->superseded--;
    }
}

void held_free(held_set *s)
{
    free(s->jobs);
    idmap_free(&s->newest);
    for (size_t i = 0; i < s->nnames; i++)
        free(s->names[i]);
    free(s->names);
    memset(s, 0, sizeof *s);
}

int64_t held_lease_margin(int64_t lease_ms, int64_t heartbeat_ms, int64_t kill_after_ms)
{
    int64_t margin = heartbeat_ms;
    if (margin < kill_after_ms + 1000)
        margin = kill_after_ms + 1000;
    if (margin > lease_ms / 2)
        margin = lease_ms / 2;
    return margin;
}

int64_t held_guard_due(const held_set *s, int64_t lease_ms, int64_t margin)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < s->n; i++) {
        int64_t t = s->jobs[i].renewed_ms + lease_ms - margin;
        if (!s->jobs[i].lost && t < due)
            due = t;
    }
    return due;
}

/* idmap.c - a hash map from job id to a position, for the set of held jobs.
 *
 * DESIGN: open addressing with linear probing; deletion shifts the following entries of
 * the probe run back (no tombstones), so lookups stay short however many jobs come and
 * go. The table doubles at half full. */
#include "idmap.h"

#include <stdlib.h>

#include "util.h"

static size_t home(const idmap *m, int64_t id)
{
    /* Fibonacci hashing: consecutive ids spread over the table */
    uint64_t h = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (m->cap - 1);
}

static void grow(idmap *m)
{
    idmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 64;
    m->slots = xcalloc(m->cap, sizeof *m->slots);
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].used)
            idmap_put(m, old.slots[i].id, old.slots[i].value);
    free(old.slots);
}

void idmap_put(idmap *m, int64_t id, size_t value)
{
    if ((m->n + 1) * 2 > m->cap)
        grow(m);
    size_t i = home(m, id);
    while (m->slots[i].used && m->slots[i].id != id)
        i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].used)
        m->n++;
    m->slots[i] = (idmap_slot){.id = id, .value = value, .used = true};
}

static idmap_slot *find(const idmap *m, int64_t id)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = home(m, id);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].used)
            return NULL;
        if (m->slots[i].id == id)
            return &m->slots[i];
    }
}

bool idmap_get(const idmap *m, int64_t id, size_t *value)
{
    const idmap_slot *s = find(m, id);
    if (s)
        *value = s->value;
    return s != NULL;
}

void idmap_del(idmap *m, int64_t id)
{
    idmap_slot *s = find(m, id);
    if (!s)
        return;
    size_t mask = m->cap - 1, hole = (size_t)(s - m->slots);
    m->slots[hole].used = false;
    m->n--;
    /* move back every later entry of the run that may no longer be reachable */
    for (size_t i = (hole + 1) & mask; m->slots[i].used; i = (i + 1) & mask) {
        size_t h = home(m, m->slots[i].id);
        /* the entry stays when its home lies cyclically in (hole, i] */
        bool stays = hole < i ? (h > hole && h <= i) : (h > hole || h <= i);
        if (!stays) {
            m->slots[hole] = m->slots[i];
            m->slots[i].used = false;
            hole = i;
        }
    }
}

void idmap_free(idmap *m)
{
    free(m->slots);
    *m = (idmap){0};
}

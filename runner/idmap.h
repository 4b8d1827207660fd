/* idmap.h - a hash map from job id (int64) to a position (size_t), for the control loop's
 * set of held jobs: constant-time lookups where a batch of a thousand outcomes would
 * otherwise scan a thousand held jobs each. */
#ifndef RUNNER_IDMAP_H
#define RUNNER_IDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idmap_slot {
    int64_t id;
    size_t value;
    bool used;
} idmap_slot;

typedef struct idmap {
    idmap_slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
} idmap;

/* idmap_put sets id's value (adding id when absent). */
void idmap_put(idmap *m, int64_t id, size_t value);
/* idmap_get finds id's value; false when id is absent. */
bool idmap_get(const idmap *m, int64_t id, size_t *value);
/* idmap_del removes id (no-op when absent). */
void idmap_del(idmap *m, int64_t id);
void idmap_free(idmap *m);

#endif

/* Memory planner: one activation arena from tensor lifetimes.
 * Greedy by size (as TFLite's arena planner): tensors sorted by size,
 * largest first, each placed at the lowest 64-byte aligned offset that does
 * not overlap, in address, any already placed tensor whose lifetime
 * [first layer, last layer] intersects its own. */
#include <stdlib.h>

#include "dfx_internal.h"

typedef struct { int t; int64_t first, last; uint64_t size, off; } item;

static int by_size(const void *a, const void *b)
{
    const item *x = (const item *)a, *y = (const item *)b;
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    return x->t - y->t;
}
static int by_off(const void *a, const void *b)
{
    const item *x = *(const item *const *)a, *y = *(const item *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Fills off[t] for every activation (others -1); returns the arena size or
 * (uint64_t)-1 when out of memory. bytes[t] gives each tensor's size. */
uint64_t dfx_plan(const dfx_model *m, const uint64_t *bytes, int keep_all, int64_t *off, uint64_t *sum)
{
    int n = 0;
    item *it = (item *)malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *it);
    item **placed = (item **)malloc((m->n_tensors ? m->n_tensors : 1) * sizeof *placed);
    if (!it || !placed) { free(it); free(placed); return (uint64_t)-1; }
    *sum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const dt_tensor *t = &m->tensors[i];
        off[i] = -1;
        if (t->is_const) continue;
        item *x = &it[n++];
        x->t = i;
        x->first = t->producer;                       /* -1: graph input */
        x->last = t->last_use > t->producer ? t->last_use : t->producer;
        if (t->is_graph_output || keep_all) x->last = m->n_layers;
        x->size = (bytes[i] + 63) & ~(uint64_t)63;
        *sum += bytes[i];
    }
    qsort(it, (size_t)n, sizeof *it, by_size);
    uint64_t total = 0;
    int np = 0;
    for (int k = 0; k < n; k++) {
        item *x = &it[k];
        uint64_t cand = 0;
        if (keep_all) cand = total;
        else
            for (int j = 0; j < np; j++) { /* placed sorted by offset */
                item *p = placed[j];
                if (p->first > x->last || x->first > p->last) continue;
                if (cand + x->size <= p->off) break;
                if (p->off + p->size > cand) cand = p->off + p->size;
            }
        x->off = cand;
        off[x->t] = (int64_t)cand;
        if (cand + x->size > total) total = cand + x->size;
        placed[np++] = x;
        qsort(placed, (size_t)np, sizeof *placed, by_off);
    }
    free(it);
    free(placed);
    return total;
}

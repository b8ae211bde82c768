/* Memory planner: one activation arena from tensor lifetimes.
 * Greedy by size (as TFLite's arena planner): tensors sorted by size,
 * largest first, each placed at the lowest 64-byte aligned offset that does
 * not overlap, in address, any already placed tensor whose lifetime
 * [first layer, last layer] intersects its own.
 *
 * The tensors are sorted once. Placed tensors are kept in a segment tree over
 * the layer indices (each one stored at the O(log L) nodes that cover its
 * lifetime), so that finding the placed tensors whose lifetime intersects a
 * new one costs O(log L) plus the number found; only those are sorted by
 * offset to find the lowest gap. For a chain of layers the whole plan is
 * O(n log n), where scanning every placed tensor was O(n^2). */
#include <stdlib.h>

#include "planner.h"

typedef struct {
    int t;
    int64_t first, last;
    uint64_t size, off;
} item;

typedef struct {
    int width;         /* leaves: time points 0..width-1 (layer index + 1) */
    int *head, *below; /* per node: first stored entry (-1 none); items stored in the subtree */
    int *entry_item, *entry_next, n_entries, cap_entries; /* singly linked entries of all nodes */
    item *it;
    int *stamp, tick; /* stamp[k] == tick: item k already reported by this query */
    const item **found;
    int nfound;
    int fail;
} tree;

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

static void insert(tree *T, int v, int lo, int hi, int a, int b, int k)
{
    if (b < lo || hi < a) return;
    T->below[v]++;
    if (a <= lo && hi <= b) {
        if (T->n_entries == T->cap_entries) {
            int cap = T->cap_entries ? 2 * T->cap_entries : 1024;
            int *pi = (int *)realloc(T->entry_item, (size_t)cap * sizeof *pi);
            if (pi) T->entry_item = pi;
            int *pn = (int *)realloc(T->entry_next, (size_t)cap * sizeof *pn);
            if (pn) T->entry_next = pn;
            if (!pi || !pn) {
                T->fail = 1;
                return;
            }
            T->cap_entries = cap;
        }
        T->entry_item[T->n_entries] = k;
        T->entry_next[T->n_entries] = T->head[v];
        T->head[v] = T->n_entries++;
        return;
    }
    int mid = lo + (hi - lo) / 2;
    insert(T, 2 * v, lo, mid, a, b, k);
    insert(T, 2 * v + 1, mid + 1, hi, a, b, k);
}

/* Report every stored item whose lifetime intersects [a, b] once. */
static void query(tree *T, int v, int lo, int hi, int a, int b)
{
    if (b < lo || hi < a || !T->below[v]) return;
    for (int e = T->head[v]; e >= 0; e = T->entry_next[e]) {
        int k = T->entry_item[e];
        if (T->stamp[k] != T->tick) {
            T->stamp[k] = T->tick;
            T->found[T->nfound++] = &T->it[k];
        }
    }
    if (lo == hi) return;
    int mid = lo + (hi - lo) / 2;
    query(T, 2 * v, lo, mid, a, b);
    query(T, 2 * v + 1, mid + 1, hi, a, b);
}

/* Fills off[t] for every activation (others -1); returns the arena size or
 * (uint64_t)-1 when out of memory. bytes[t] gives each tensor's size. */
uint64_t dfx_plan(const dfx_model *m, const uint64_t *bytes, int keep_all, int64_t *off, uint64_t *sum)
{
    int n = 0, cap = m->n_tensors ? m->n_tensors : 1;
    tree T = {0};
    int span = m->n_layers + 2, width = 1; /* first = -1 (graph input) .. last = n_layers */
    while (width < span) width *= 2;
    T.width = width;
    item *it = (item *)malloc((size_t)cap * sizeof *it);
    T.head = (int *)malloc((size_t)2 * width * sizeof *T.head);
    T.below = (int *)calloc((size_t)2 * width, sizeof *T.below);
    T.stamp = (int *)calloc((size_t)cap, sizeof *T.stamp);
    T.found = (const item **)malloc((size_t)cap * sizeof *T.found);
    uint64_t total = 0;
    if (!it || !T.head || !T.below || !T.stamp || !T.found) {
        total = (uint64_t)-1;
        goto done;
    }
    for (int v = 0; v < 2 * width; v++) T.head[v] = -1;
    T.it = it;
    *sum = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const dt_tensor *t = &m->tensors[i];
        off[i] = -1;
        if (t->is_const) continue;
        item *x = &it[n++];
        x->t = i;
        x->first = t->producer; /* -1: graph input */
        x->last = t->last_use > t->producer ? t->last_use : t->producer;
        if (t->is_graph_output || keep_all) x->last = m->n_layers;
        x->size = (bytes[i] + 63) & ~(uint64_t)63;
        *sum += bytes[i];
    }
    qsort(it, (size_t)n, sizeof *it, by_size);
    for (int k = 0; k < n; k++) {
        item *x = &it[k];
        uint64_t cand = 0;
        int a = (int)x->first + 1, b = (int)x->last + 1;
        if (keep_all) cand = total;
        else {
            T.tick++;
            T.nfound = 0;
            query(&T, 1, 0, width - 1, a, b);
            qsort(T.found, (size_t)T.nfound, sizeof *T.found, by_off);
            for (int j = 0; j < T.nfound; j++) { /* conflicting tensors by offset */
                const item *p = T.found[j];
                if (cand + x->size <= p->off) break;
                if (p->off + p->size > cand) cand = p->off + p->size;
            }
            insert(&T, 1, 0, width - 1, a, b, k);
            if (T.fail) {
                total = (uint64_t)-1;
                goto done;
            }
        }
        x->off = cand;
        off[x->t] = (int64_t)cand;
        if (cand + x->size > total) total = cand + x->size;
    }
done:
    free(T.head);
    free(T.below);
    free(T.entry_item);
    free(T.entry_next);
    free(T.stamp);
    free(T.found);
    free(it);
    return total;
}

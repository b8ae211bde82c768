/* Memory planner: one activation arena from tensor lifetimes.
 * Greedy by size (as TFLite's arena planner): tensors sorted by size,
 * largest first, each placed at the lowest 64-byte aligned offset that does
 * not overlap, in address, any already placed tensor whose lifetime
 * [first layer, last layer] intersects its own.
 *
 * The tensors are sorted once, by a radix sort (none when already in order,
 * as in a chain of equal tensors). Finding the placed tensors whose lifetime
 * intersects a new one uses two structures over the time points (layer index
 * + 1):
 *  - short lifetimes (at most SHORT_SPAN steps, most tensors of a network)
 *    are kept in one bucket per start point; a new lifetime [a, b] looks at
 *    the buckets a - s .. b, s the longest short lifetime placed so far (1 in
 *    a chain), skipping empty blocks of 64 and 4096 points, so a long query
 *    costs O(span / 4096) plus O(1) per tensor found;
 *  - longer lifetimes go to a segment tree over the time points (each stored
 *    at the O(log L) nodes that cover it), built when the first one comes.
 * Only the tensors found are sorted by offset to find the lowest gap. For a
 * chain of layers the whole plan is O(n); in general O(n log n) plus the
 * number of conflicts found. */
#include <stdlib.h>

#include "planner.h"

#define SHORT_SPAN 8 /* lifetimes of at most this many steps go to the buckets */

typedef dfx_lifetime item;

typedef struct {
    uint64_t off, end;
} placed;

typedef struct {
    item *it;
    const int64_t *off; /* per tensor: the offsets placed so far */
    int span;           /* time points 0..span-1 */
    /* short lifetimes: first item per start point, items per block of 64 and 4096 points */
    int *bucket, *cnt64, *cnt4k;
    /* long lifetimes: segment tree (NULL until the first one) */
    int width;         /* leaves */
    int *head, *below; /* per node: first stored entry (-1 none); items stored in the subtree */
    int *entry_item, *entry_next, n_entries, cap_entries;
    int *stamp, tick; /* stamp[k] == tick: item k already reported by this query */
    placed *found;
    int nfound;
    int longest_short; /* the longest short lifetime placed so far (b - a) */
    int fail;
} planner;

static int by_off(const void *a, const void *b)
{
    const placed *x = (const placed *)a, *y = (const placed *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static void report(planner *P, const item *x)
{
    uint64_t off = (uint64_t)P->off[x->t];
    P->found[P->nfound].off = off;
    P->found[P->nfound++].end = off + x->size;
}

static void tree_insert(planner *P, int v, int lo, int hi, int a, int b, int k)
{
    if (b < lo || hi < a) return;
    P->below[v]++;
    if (a <= lo && hi <= b) {
        if (P->n_entries == P->cap_entries) {
            int cap = P->cap_entries ? 2 * P->cap_entries : 1024;
            int *pi = (int *)realloc(P->entry_item, (size_t)cap * sizeof *pi);
            if (pi) P->entry_item = pi;
            int *pn = (int *)realloc(P->entry_next, (size_t)cap * sizeof *pn);
            if (pn) P->entry_next = pn;
            if (!pi || !pn) {
                P->fail = 1;
                return;
            }
            P->cap_entries = cap;
        }
        P->entry_item[P->n_entries] = k;
        P->entry_next[P->n_entries] = P->head[v];
        P->head[v] = P->n_entries++;
        return;
    }
    int mid = lo + (hi - lo) / 2;
    tree_insert(P, 2 * v, lo, mid, a, b, k);
    tree_insert(P, 2 * v + 1, mid + 1, hi, a, b, k);
}

/* Report every long lifetime of the tree that intersects [a, b], once. */
static void tree_query(planner *P, int v, int lo, int hi, int a, int b)
{
    if (b < lo || hi < a || !P->below[v]) return;
    for (int e = P->head[v]; e >= 0; e = P->entry_next[e]) {
        int k = P->entry_item[e];
        if (P->stamp[k] != P->tick) {
            P->stamp[k] = P->tick;
            report(P, &P->it[k]);
        }
    }
    if (lo == hi) return;
    int mid = lo + (hi - lo) / 2;
    tree_query(P, 2 * v, lo, mid, a, b);
    tree_query(P, 2 * v + 1, mid + 1, hi, a, b);
}

static int tree_init(planner *P, int n)
{
    int width = 1;
    while (width < P->span) width *= 2;
    P->width = width;
    P->head = (int *)malloc((size_t)2 * width * sizeof *P->head);
    P->below = (int *)calloc((size_t)2 * width, sizeof *P->below);
    P->stamp = (int *)calloc((size_t)n, sizeof *P->stamp);
    if (!P->head || !P->below || !P->stamp) return 0;
    for (int v = 0; v < 2 * width; v++) P->head[v] = -1;
    return 1;
}

/* Report every short lifetime that intersects [a, b]: those starting in [a - longest_short, b]. */
static void short_query(planner *P, int a, int b)
{
    for (int c = a > P->longest_short ? a - P->longest_short : 0; c <= b; c++) {
        if (!(c & 4095) && c + 4095 <= b && !P->cnt4k[c >> 12]) {
            c += 4095;
            continue;
        }
        if (!(c & 63) && c + 63 <= b && !P->cnt64[c >> 6]) {
            c += 63;
            continue;
        }
        for (int k = P->bucket[c]; k >= 0; k = P->it[k].next)
            if (P->it[k].b >= a) report(P, &P->it[k]);
    }
}

/* The lowest offset where x fits between the placed tensors found (sorted by offset here). */
static uint64_t lowest_gap(planner *P, uint64_t size)
{
    placed *f = P->found;
    int n = P->nfound;
    if (n > 16) qsort(f, (size_t)n, sizeof *f, by_off);
    else
        for (int i = 1; i < n; i++) {
            placed v = f[i];
            int j = i;
            for (; j > 0 && f[j - 1].off > v.off; j--) f[j] = f[j - 1];
            f[j] = v;
        }
    uint64_t cand = 0;
    for (int j = 0; j < n; j++) {
        if (cand + size <= f[j].off) break;
        if (f[j].end > cand) cand = f[j].end;
    }
    return cand;
}

/* Indices 0..n-1 of it[] ordered by size, largest first, stable (ties by tensor index):
 * NULL in *ord when already in that order. Returns 0 when out of memory. */
static int size_order(const item *it, int n, int **ord)
{
    *ord = NULL;
    int sorted = 1;
    for (int k = 1; k < n && sorted; k++) sorted = it[k - 1].size >= it[k].size;
    if (sorted) return 1;
    int *o = (int *)malloc((size_t)n * sizeof *o), *tmp = (int *)malloc((size_t)n * sizeof *tmp);
    if (!o || !tmp) {
        free(o);
        free(tmp);
        return 0;
    }
    for (int k = 0; k < n; k++) o[k] = k;
    for (int shift = 6; shift < 64; shift += 8) { /* sizes are multiples of 64: LSD radix on size >> 6 */
        size_t cnt[257] = {0};
        for (int k = 0; k < n; k++) cnt[1 + (255 - ((it[o[k]].size >> shift) & 255))]++;
        int uniform = 0;
        for (int d = 1; d <= 256; d++) uniform |= cnt[d] == (size_t)n;
        if (uniform) continue;
        for (int d = 1; d <= 256; d++) cnt[d] += cnt[d - 1];
        for (int k = 0; k < n; k++) tmp[cnt[255 - ((it[o[k]].size >> shift) & 255)]++] = o[k];
        int *sw = o;
        o = tmp;
        tmp = sw;
    }
    free(tmp);
    *ord = o;
    return 1;
}

uint64_t dfx_plan(dfx_lifetime *it, int n, int n_layers, int keep_all, int64_t *off)
{
    planner P = {0};
    int *ord = NULL;
    uint64_t total = 0;
    P.it = it;
    P.off = off;
    P.span = n_layers + 2; /* a = 0 (graph input) .. b = n_layers + 1 */
    P.bucket = (int *)malloc((size_t)P.span * sizeof *P.bucket);
    P.cnt64 = (int *)calloc((size_t)(P.span >> 6) + 1, sizeof *P.cnt64);
    P.cnt4k = (int *)calloc((size_t)(P.span >> 12) + 1, sizeof *P.cnt4k);
    P.found = (placed *)malloc((size_t)(n ? n : 1) * sizeof *P.found);
    if (!P.bucket || !P.cnt64 || !P.cnt4k || !P.found || !size_order(it, n, &ord)) goto nomem;
    for (int c = 0; c < P.span; c++) P.bucket[c] = -1;
    for (int k = 0; k < n; k++) {
        int j = ord ? ord[k] : k;
        item *x = &it[j];
        uint64_t cand = total;
        if (!keep_all) {
            P.nfound = 0;
            short_query(&P, x->a, x->b);
            if (P.head && P.below[1]) {
                P.tick++;
                tree_query(&P, 1, 0, P.width - 1, x->a, x->b);
            }
            cand = lowest_gap(&P, x->size);
            if (x->b - x->a <= SHORT_SPAN) {
                if (x->b - x->a > P.longest_short) P.longest_short = x->b - x->a;
                x->next = P.bucket[x->a];
                P.bucket[x->a] = j;
                P.cnt64[x->a >> 6]++;
                P.cnt4k[x->a >> 12]++;
            } else {
                if (!P.head && !tree_init(&P, n)) goto nomem;
                tree_insert(&P, 1, 0, P.width - 1, x->a, x->b, j);
                if (P.fail) goto nomem;
            }
        }
        off[x->t] = (int64_t)cand;
        if (cand + x->size > total) total = cand + x->size;
    }
    goto done;
nomem:
    total = (uint64_t)-1;
done:
    free(ord);
    free(P.bucket);
    free(P.cnt64);
    free(P.cnt4k);
    free(P.found);
    free(P.head);
    free(P.below);
    free(P.stamp);
    free(P.entry_item);
    free(P.entry_next);
    return total;
}

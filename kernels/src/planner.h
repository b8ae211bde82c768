/* The memory planner (planner.c): arena offsets of the activations. */
#ifndef DFX_PLANNER_H
#define DFX_PLANNER_H

#include "dfx_internal.h"

/* One activation to place: its lifetime in time points (first layer + 1, 0
 * for a graph input, .. last layer + 1) and its size. */
typedef struct dfx_lifetime {
    int t;         /* tensor index */
    int a, b;      /* first and last time point, a <= b <= n_layers + 1 */
    int next;      /* the planner's own */
    uint64_t size; /* bytes, a multiple of 64 */
} dfx_lifetime;

/* Places the n activations of it[] (in tensor order) and sets off[it[k].t]
 * for each; keep_all: no two tensors share memory. Returns the arena size,
 * or (uint64_t)-1 when out of memory. */
uint64_t dfx_plan(dfx_lifetime *it, int n, int n_layers, int keep_all, int64_t *off);

#endif

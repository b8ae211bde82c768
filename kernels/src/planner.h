/* The memory planner (planner.c): arena offsets of the activations. */
#ifndef DFX_PLANNER_H
#define DFX_PLANNER_H

#include "dfx_internal.h"

/* Fills off[t] for every activation (constants: -1) from the tensors'
 * lifetimes, bytes[t] bytes each; keep_all: no two tensors share memory.
 * Returns the arena size (and *sum, the sum of all sizes), or (uint64_t)-1
 * when out of memory. */
uint64_t dfx_plan(const dfx_model *m, const uint64_t *bytes, int keep_all, int64_t *off, uint64_t *sum);

#endif

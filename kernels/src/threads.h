/* Work splitting over a session's threads.
 *
 * A library session with N > 1 threads owns a pool (threads.c) of N - 1
 * worker threads, created with the session and waiting on a condition
 * variable between runs; the thread that calls dfx_session_run is thread 0.
 * A kernel that splits its work describes it as tasks and hands them to
 * dfx_par_for: every task writes its own part of the output and uses only the
 * scratch of the thread that runs it (dfx_par_scratch). Which thread runs
 * which task is not fixed, but no task's result depends on it or on how the
 * work is cut: each output element is computed by the same operations, in the
 * same order, as in one thread (integer sums are exact in any order; float
 * kernels are split by output element, never inside a sum). So every thread
 * count gives bit-identical results.
 *
 * Without a pool (one thread, or a model compiled to C by `dfxsdk compile`,
 * which has no threads) par is NULL or par->pool is NULL and the tasks run
 * in order on the calling thread. */
#ifndef DFX_THREADS_H
#define DFX_THREADS_H

#include <stddef.h>
#include <stdint.h>

#include "kselect.h"

#define DFX_PAR_SPLIT 4 /* tasks per thread where a kernel cuts its work freely (load balance) */

struct dfx_pool;

/* The parallel context of one layer: the pool and each thread's kernel scratch.
 * Thread 0 uses the layer's scratch in the arena; thread t >= 1 the bytes at
 * scratch + (t - 1) * stride. */
typedef struct dfx_par {
    struct dfx_pool *pool; /* NULL: run every task on the calling thread */
    int threads;           /* threads of the pool (1 without one) */
    uint8_t *scratch;
    size_t stride;
} dfx_par;

/* Task `task` of a split job, run by thread `thread` (0 .. threads - 1). */
typedef void (*dfx_task_fn)(void *ctx, int64_t task, int thread);

#if DFX_ALL_KERNELS
/* threads.c: a pool of threads - 1 workers (threads >= 2), or NULL when out of
 * resources (the message says why); destroy joins them. */
struct dfx_pool *dfx_pool_create(int threads);
void dfx_pool_destroy(struct dfx_pool *pool);
/* Run tasks 0 .. n - 1 on the pool's threads and the caller; returns when all are done. */
void dfx_pool_run(struct dfx_pool *pool, int64_t n, dfx_task_fn fn, void *ctx);
/* The threads of N = 0 (automatic): DFX_THREADS, else 1 (dfx.h). */
int dfx_threads_auto(void);
#endif

static inline int dfx_par_threads(const dfx_par *par) { return par && par->pool ? par->threads : 1; }

/* The kernel scratch of `thread`; sc: thread 0's (the layer's scratch in the arena). */
static inline void *dfx_par_scratch(const dfx_par *par, void *sc, int thread)
{ return thread == 0 ? sc : (void *)(par->scratch + (size_t)(thread - 1) * par->stride); }

/* Run tasks 0 .. n - 1, split over the threads when there is a pool. */
static inline void dfx_par_for(const dfx_par *par, int64_t n, dfx_task_fn fn, void *ctx)
{
#if DFX_ALL_KERNELS
    if (n > 1 && dfx_par_threads(par) > 1) {
        dfx_pool_run(par->pool, n, fn, ctx);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
}

/* Elements [a, b) of an element-wise job, run by `thread`. */
typedef void (*dfx_range_fn)(void *ctx, int64_t a, int64_t b, int thread);

typedef struct dfx_range_job {
    dfx_range_fn fn;
    void *ctx;
    int64_t n, chunks, align;
} dfx_range_job;

static inline int64_t dfx_range_edge(const dfx_range_job *j, int64_t i)
{
    if (i >= j->chunks) return j->n;
    int64_t e = j->n / j->chunks * i + j->n % j->chunks * i / j->chunks; /* n * i / chunks without overflow */
    return e - e % j->align;
}

static inline void dfx_range_task(void *ctx, int64_t task, int thread)
{
    const dfx_range_job *j = (const dfx_range_job *)ctx;
    int64_t a = dfx_range_edge(j, task), b = dfx_range_edge(j, task + 1);
    if (b > a) j->fn(j->ctx, a, b, thread);
}

/* Items [0, n) (elements, planes): one call with [0, n) on one thread (or when n < 2 * grain), else
 * chunks of about n / (threads * DFX_PAR_SPLIT) items, at least `grain`, starting at multiples of `align`;
 * a multiple of `threads` chunks when there are at least `threads` (equal work per thread). */
static inline void dfx_par_range(const dfx_par *par, int64_t n, int64_t grain, int64_t align, dfx_range_fn fn,
                                 void *ctx)
{
    int64_t threads = dfx_par_threads(par), chunks = grain > 0 ? n / grain : n;
    if (chunks > threads * DFX_PAR_SPLIT) chunks = threads * DFX_PAR_SPLIT;
    if (chunks > threads) chunks -= chunks % threads;
    if (threads < 2 || chunks < 2) {
        if (n > 0) fn(ctx, 0, n, 0);
        return;
    }
    dfx_range_job j = {fn, ctx, n, chunks, align > 0 ? align : 1};
    dfx_par_for(par, chunks, dfx_range_task, &j);
}

#endif

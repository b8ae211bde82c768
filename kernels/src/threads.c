/* The thread pool of a session (threads.h): N - 1 POSIX threads created with
 * the session and joined when it is destroyed. Nothing is allocated per job.
 *
 * A job is published in one 64-bit word, `state`: its generation (high 32
 * bits) and the next task to take (low 32 bits), with the job's function,
 * context and task count in the slot of the generation's parity. Every thread
 * takes tasks by compare-and-swap on `state`, so a task is taken only while
 * its job is current; a thread that comes late (woken after the others took
 * every task) finds nothing and waits for the next job. The caller takes
 * tasks too and then waits only for the tasks other threads have taken and
 * not finished, never for a thread that took none: on a machine where other
 * work keeps a worker from a core, the caller simply does more of the work.
 * Between jobs a worker polls for 0.3 ms (the next layer usually follows
 * within microseconds; waking a sleeping thread costs tens of microseconds,
 * more in a virtual machine), yields the core a few times, then sleeps on a
 * condition variable.
 *
 * After fork() the child has only the calling thread: a pool created before
 * the fork runs its jobs on the caller alone (pthread_atfork counts forks). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dfx_internal.h"
#include "threads.h"

#define SPIN_NS 300000 /* a waiting thread polls (with a pause) for 0.3 ms before yielding */
#define YIELDS 20      /* sched_yield()s before sleeping */

#if defined(__GNUC__)
#define LOAD(p) __atomic_load_n(p, __ATOMIC_ACQUIRE)
#define LOAD_RELAXED(p) __atomic_load_n(p, __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n(p, v, __ATOMIC_RELEASE)
#define STORE_RELAXED(p, v) __atomic_store_n(p, v, __ATOMIC_RELAXED)
#define FETCH_ADD(p, v) __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL)
#define CAS(p, expect, v) __atomic_compare_exchange_n(p, expect, v, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
#else
#error "threads.c needs GCC or Clang atomics (__atomic builtins)"
#endif

#if defined(__x86_64__) || defined(__i386__)
#define RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || (defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7)
#define RELAX() __asm__ __volatile__("yield")
#else
#define RELAX() ((void)0)
#endif

#if defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_8)
#define ST_LOAD(p) LOAD(&(p)->state)
#define ST_STORE(p, v) STORE(&(p)->state, v)
#define ST_CAS(p, expect, v) CAS(&(p)->state, expect, v)
#else /* no 8-byte atomics (ARMv6: the single-core boards): `state` under a spin lock */
#define ST_LOAD(p) st_load(p)
#define ST_STORE(p, v) st_store(p, v)
#define ST_CAS(p, expect, v) st_cas(p, expect, v)
#endif

#define GEN(s) ((uint32_t)((s) >> 32))
#define NEXT(s) ((uint32_t)(s))

typedef struct job {
    dfx_task_fn fn;
    void *ctx;
    uint32_t n; /* tasks (fewer than 2^31) */
} job;

struct worker {
    struct dfx_pool *pool;
    int index;
};

struct dfx_pool {
    int threads; /* including the caller (thread 0) */
    int forks;   /* fork count when created */
    int started; /* workers created */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t state;    /* generation << 32 | next task */
    job slot[2];       /* the job of generation g in slot[g & 1] */
    uint32_t finished; /* tasks of the current job finished (jobs have fewer than 2^31) */
    int state_lock;    /* without 8-byte atomics: a spin lock around `state` */
    int caller_wait;   /* the caller sleeps on `done` (under mu) */
    int stop;          /* destroy: the workers leave */
    pthread_t *tid;
    struct worker *workers;
};

#if !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_8)
static void st_lock(struct dfx_pool *p)
{
    while (__atomic_exchange_n(&p->state_lock, 1, __ATOMIC_ACQUIRE)) RELAX();
}
static void st_unlock(struct dfx_pool *p) { __atomic_store_n(&p->state_lock, 0, __ATOMIC_RELEASE); }
static uint64_t st_load(struct dfx_pool *p)
{
    st_lock(p);
    uint64_t v = p->state;
    st_unlock(p);
    return v;
}
static void st_store(struct dfx_pool *p, uint64_t v)
{
    st_lock(p);
    p->state = v;
    st_unlock(p);
}
static int st_cas(struct dfx_pool *p, uint64_t *expect, uint64_t v)
{
    st_lock(p);
    int ok = p->state == *expect;
    if (ok) p->state = v;
    else *expect = p->state;
    st_unlock(p);
    return ok;
}
#endif

static int fork_count;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void count_fork(void) { fork_count++; }
static void register_atfork(void) { pthread_atfork(NULL, NULL, count_fork); }

/* Take and run tasks while the current job has some; returns the generation found empty. */
static uint32_t take_tasks(struct dfx_pool *p, int thread)
{
    uint64_t s = ST_LOAD(p);
    for (;;) {
        const job *j = &p->slot[GEN(s) & 1];
        dfx_task_fn fn = LOAD_RELAXED(&j->fn);
        void *ctx = LOAD_RELAXED(&j->ctx);
        uint32_t n = LOAD_RELAXED(&j->n);
        if (NEXT(s) >= n) { /* nothing left; n is the job's own if state has not moved on since */
            uint64_t now = ST_LOAD(p);
            if (now == s) return GEN(s);
            s = now;
            continue;
        }
        if (!ST_CAS(p, &s, s + 1)) continue; /* s now holds the current state */
        fn(ctx, NEXT(s), thread);
        if (FETCH_ADD(&p->finished, 1) + 1 == n) { /* the job's last task: wake a sleeping caller */
            pthread_mutex_lock(&p->mu);
            if (p->caller_wait) pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
        s = ST_LOAD(p);
    }
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Spin until `state` (which 0) or `finished` (which 1) is no longer `value`, or stop, or SPIN_NS have
 * passed (the clock read every 64 polls); 1 if it changed. */
static int spin_while(struct dfx_pool *p, int which, uint64_t value)
{
    int64_t end = now_ns() + SPIN_NS;
    for (unsigned polls = 1;; polls++) {
        uint64_t v = which ? LOAD(&p->finished) : ST_LOAD(p);
        if (v != value || LOAD(&p->stop)) return 1;
        RELAX();
        if (polls % 64 == 0 && now_ns() > end) return 0;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = (struct worker *)arg;
    struct dfx_pool *p = w->pool;
    uint32_t seen = 0; /* the generation last found without tasks */
    for (;;) {
        uint64_t s = ST_LOAD(p);
        if (GEN(s) == seen && !LOAD(&p->stop) && !spin_while(p, 0, s)) {
            for (int y = 0; y < YIELDS && GEN(ST_LOAD(p)) == seen && !LOAD(&p->stop); y++) sched_yield();
            pthread_mutex_lock(&p->mu);
            while (GEN(ST_LOAD(p)) == seen && !LOAD(&p->stop)) pthread_cond_wait(&p->go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (LOAD(&p->stop)) return NULL;
        if (GEN(ST_LOAD(p)) == seen) continue; /* the state moved within the same generation */
        seen = take_tasks(p, w->index);
    }
}

struct dfx_pool *dfx_pool_create(int threads)
{
    pthread_once(&atfork_once, register_atfork);
    struct dfx_pool *p = (struct dfx_pool *)calloc(1, sizeof *p);
    if (!p) {
        dfx_fail(DFX_ERR_NOMEM, "out of memory creating a thread pool");
        return NULL;
    }
    p->threads = threads;
    p->forks = fork_count;
    p->tid = (pthread_t *)calloc((size_t)threads, sizeof *p->tid);
    p->workers = (struct worker *)calloc((size_t)threads, sizeof *p->workers);
    if (!p->tid || !p->workers || pthread_mutex_init(&p->mu, NULL)) {
        free(p->tid);
        free(p->workers);
        free(p);
        dfx_fail(DFX_ERR_NOMEM, "out of memory creating a thread pool");
        return NULL;
    }
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int t = 1; t < threads; t++) {
        p->workers[t].pool = p;
        p->workers[t].index = t;
        int e = pthread_create(&p->tid[t], NULL, worker_main, &p->workers[t]);
        if (e) {
            dfx_pool_destroy(p);
            dfx_fail(DFX_ERR_NOMEM, "cannot create thread %d of %d: %s", t + 1, threads, strerror(e));
            return NULL;
        }
        p->started = t;
    }
    return p;
}

void dfx_pool_destroy(struct dfx_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    STORE(&p->stop, 1);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    if (p->forks == fork_count)
        for (int t = 1; t <= p->started; t++) pthread_join(p->tid[t], NULL);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->tid);
    free(p->workers);
    free(p);
}

void dfx_pool_run(struct dfx_pool *p, int64_t n, dfx_task_fn fn, void *ctx)
{
    if (p->forks != fork_count || n >= ((int64_t)1 << 31)) { /* a forked child (no workers), or too many tasks */
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
        return;
    }
    uint64_t s = ST_LOAD(p);
    uint32_t g = GEN(s) + 1;
    job *j = &p->slot[g & 1]; /* generation g - 1's slot: every task of g - 2 is finished */
    STORE_RELAXED(&j->fn, fn);
    STORE_RELAXED(&j->ctx, ctx);
    STORE_RELAXED(&j->n, (uint32_t)n);
    STORE_RELAXED(&p->finished, 0u);
    pthread_mutex_lock(&p->mu); /* publish: spinning workers see the new generation, sleeping ones wake */
    ST_STORE(p, (uint64_t)g << 32);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    take_tasks(p, 0);
    uint32_t done = LOAD(&p->finished);
    while (done < (uint32_t)n && spin_while(p, 1, done)) done = LOAD(&p->finished);
    if (LOAD(&p->finished) < (uint32_t)n) {
        pthread_mutex_lock(&p->mu);
        p->caller_wait = 1;
        while (LOAD(&p->finished) < (uint32_t)n) pthread_cond_wait(&p->done, &p->mu);
        p->caller_wait = 0;
        pthread_mutex_unlock(&p->mu);
    }
}

int dfx_threads_auto(void)
{
    const char *env = getenv("DFX_THREADS");
    if (!env || !*env) return 1;
    if (strcmp(env, "cores") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 1 ? 1 : n > DFX_MAX_SESSION_THREADS ? DFX_MAX_SESSION_THREADS : (int)n;
    }
    char *end;
    errno = 0;
    long n = strtol(env, &end, 10);
    if (errno || *end || n < 1) return 1;
    return n > DFX_MAX_SESSION_THREADS ? DFX_MAX_SESSION_THREADS : (int)n;
}

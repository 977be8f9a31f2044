/* sched_util.h - the bookkeeping the built-in schedulers share: a plan ledger
 * (token budget, KV blocks, watermark, sequence slots, swap space), preemption,
 * victim choice, a rank-ordered admission pass, per-request state kept by id.
 *
 * KV accounting (what every plan built here guarantees, and what
 * tests/test_sched_plugins.c checks):
 *   need(i, t)  device blocks request i must gain to run t tokens this iteration:
 *               ceil((computed + x) / block) - (blocks on device), x = t for a
 *               prefill chunk, view->decode_tokens for a decode step; a SWAPPED
 *               request has none on device, so it needs all its blocks back;
 *   the plan's needs <= kv_blocks_free + the device blocks its preemptions free;
 *   an admission (a WAITING or SWAPPED request given tokens) also has to leave
 *   watermark_blocks free after reserving its whole remaining prefill (vLLM's
 *   can_allocate), so a burst of admissions cannot eat the blocks that running
 *   requests need to keep decoding; the watermark is waived for the first
 *   admission when nothing runs (as the engine waives it);
 *   running + admitted sequences <= max_seqs; a decode costs decode_tokens of
 *   the budget, a prefill chunk its length.
 * Views of engines older than ABI 1.3 lack blocks_held, watermark, swap space and
 * predicted_out: held blocks then come from `computed`, the watermark is 0, there
 * is no swap, and the prediction is max_new. */
#ifndef LLMLAB_PLUGINS_SCHED_UTIL_H
#define LLMLAB_PLUGINS_SCHED_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "llmlab/plugin.h"

/* 1 when the view (of whatever engine built it) carries field f. */
#define LLMLAB_SU_HAS(v, f) ((v)->size >= offsetof(llmlab_sched_view, f) + sizeof((v)->f))

enum { LLMLAB_SU_RECOMPUTE = 1, LLMLAB_SU_SWAP = 2 };

/* Victim policies (the priority plugin's `victim` parameter). */
typedef enum {
    LLMLAB_SU_VICTIM_LOWEST_KEY_LATEST = 0, /* largest rank key (least urgent), then latest arrival */
    LLMLAB_SU_VICTIM_MOST_BLOCKS = 1,       /* most KV blocks held, then least urgent, then latest */
    LLMLAB_SU_VICTIM_LATEST = 2             /* latest arrival */
} llmlab_su_victim;

/* ---- view accessors --------------------------------------------------------- */

int llmlab_su_blocks_of(int tokens, int block_size);
int llmlab_su_watermark(const llmlab_sched_view *v);
int llmlab_su_held(const llmlab_sched_view *v, int i);      /* KV blocks request i holds */
int llmlab_su_predicted(const llmlab_sched_view *v, int i); /* predicted output length */
int llmlab_su_swap_free(const llmlab_sched_view *v);
int llmlab_su_default_mode(const llmlab_sched_view *v);     /* the engine's preempt_mode, 1 if absent */
static inline int llmlab_su_in_prefill(const llmlab_sched_req *r) { return r->computed < r->target; }
/* Device blocks request i must gain to run t tokens (above). */
int llmlab_su_need(const llmlab_sched_view *v, int i, int t);
/* Blocks an admission reserves: its whole remaining prefill (or one decode step). */
int llmlab_su_reserve(const llmlab_sched_view *v, int i);
/* Preemption mode from a plugin's enum parameter "auto" | "recompute" | "swap":
 * auto = the engine's preempt_mode, or with swap_if_space = 1 "swap whenever the
 * engine has swap space, else recompute" (FastServe). */
int llmlab_su_mode(const char *param, const llmlab_sched_view *v, int swap_if_space);

/* ---- scratch buffers -------------------------------------------------------- */

/* A growable per-plugin buffer through the host allocator (contents are not kept
 * when it grows: it is per-iteration scratch). */
typedef struct {
    void *p;
    size_t cap; /* bytes */
} llmlab_su_buf;

void *llmlab_su_buf_get(const llmlab_host *h, llmlab_su_buf *b, size_t bytes); /* zeroed; NULL: no memory */
void llmlab_su_buf_free(const llmlab_host *h, llmlab_su_buf *b);

/* ---- the plan ledger -------------------------------------------------------- */

typedef struct {
    const llmlab_sched_view *v;
    llmlab_sched_plan *plan;
    int budget;         /* tokens left this iteration */
    int free;           /* device KV blocks left after the plan's needs and preemptions */
    int admit_free;     /* free minus the prefill reservations of this plan's admissions */
    int watermark;
    int swap_free;      /* host swap blocks left */
    int seqs;           /* sequences holding a slot: RUNNING ones not preempted + admissions */
    int scheduled;      /* requests given tokens */
    uint8_t *handled;   /* [n_reqs] 1 = scheduled or preempted in this plan */
} llmlab_su_ledger;

/* Starts a plan; budget is capped by view->token_budget.  handled must hold
 * n_reqs bytes (zeroed here). */
void llmlab_su_begin(llmlab_su_ledger *L, const llmlab_sched_view *v, llmlab_sched_plan *plan, int budget,
                     uint8_t *handled);

/* Why a request could not run. */
typedef enum {
    LLMLAB_SU_RAN = 0,
    LLMLAB_SU_NO_BUDGET = 1,
    LLMLAB_SU_NO_KV = 2,   /* device blocks (or the watermark for an admission) */
    LLMLAB_SU_NO_SLOT = 3  /* max_seqs sequences hold slots */
} llmlab_su_why;

/* Schedules request i (not FINISHED/FUTURE, not handled yet) for up to max_tokens
 * prefill tokens, or one decode step, if the budget, the KV blocks and a slot
 * allow; a running prefill chunk shrinks to what the free blocks hold.  Returns
 * LLMLAB_SU_RAN with plan->run_tokens[i] set, or why it could not. */
llmlab_su_why llmlab_su_try_run(llmlab_su_ledger *L, int i, int max_tokens);

/* Preempts running request i (not scheduled in this plan) in mode (swap falls
 * back to recompute when swap space is short); returns the mode used. */
int llmlab_su_preempt(llmlab_su_ledger *L, int i, int mode);

/* The victim among eligible[j] != 0 RUNNING requests by policy; key[j] is the rank
 * key (larger = less urgent; NULL: the request's priority).  -1 when none. */
int llmlab_su_pick(const llmlab_sched_view *v, const uint8_t *eligible, const double *key,
                   llmlab_su_victim policy);

/* ---- rank-ordered passes ---------------------------------------------------- */

/* One request's place in a pass: sorted by k1, then k2, then arrival, then id. */
typedef struct {
    double k1, k2, arrival;
    int id, idx;
} llmlab_su_rank;

void llmlab_su_sort(llmlab_su_rank *r, int n);

typedef struct {
    const double *key;        /* [n_reqs] rank key, smaller = more urgent (the k1 of the order) */
    int preempt_for_admission;/* a waiting request may preempt running ones with a strictly larger key */
    int mode;                 /* 1 recompute, 2 swap (with fallback) */
    llmlab_su_victim victim;
    uint8_t *scratch;         /* [n_reqs] */
} llmlab_su_pass_opts;

/* Walks order[0..n) once.  A running request runs if the budget and KV allow; when
 * its blocks are short it preempts running requests later in the order (by the
 * victim policy), or itself when there are none (vLLM).  A waiting or swapped
 * request is admitted when it fits, else (preempt_for_admission) when preempting
 * running requests of strictly larger key makes it fit; the first one that cannot
 * get in stops all later admissions (strict order, no queue jumping), and so does
 * one with a larger key than a request preempted in this pass (without keys: any
 * preemption stops admissions, as in vLLM). */
void llmlab_su_rank_pass(llmlab_su_ledger *L, const llmlab_su_rank *order, int n, const llmlab_su_pass_opts *o);

/* The per-iteration scratch of a scheduler that plans with one rank pass: the
 * order and the pass's handled and scratch bytes, grown as n_reqs grows. */
typedef struct {
    llmlab_su_buf order, handled, scratch;
} llmlab_su_pass_bufs;

void llmlab_su_pass_bufs_free(const llmlab_host *h, llmlab_su_pass_bufs *b);

/* An order of n_reqs entries from b; NULL when out of memory. */
llmlab_su_rank *llmlab_su_order(const llmlab_host *h, llmlab_su_pass_bufs *b, const llmlab_sched_view *v);

/* Ranks the arrived, unfinished requests into order by (key[i], arrival, id)
 * (key NULL: arrival, id); returns how many. */
int llmlab_su_rank_live(const llmlab_sched_view *v, const double *key, llmlab_su_rank *order);

/* Sorts order[0..m), starts a plan of budget tokens and walks the order once
 * (llmlab_su_rank_pass with o, whose scratch comes from b).  LLMLAB_ENOMEM when
 * the scratch cannot grow. */
llmlab_status llmlab_su_plan_pass(const llmlab_host *h, llmlab_su_pass_bufs *b, const llmlab_sched_view *v,
                                  llmlab_sched_plan *plan, int budget, llmlab_su_rank *order, int m,
                                  llmlab_su_pass_opts o);

/* ---- per-request state by id ------------------------------------------------ */

/* Open-addressing map id -> slot, rebuilt from the live view every iteration so
 * finished requests drop out (cost O(live requests)). */
typedef struct {
    int *keys;  /* [cap] request ids, INT32_MIN = empty */
    int *vals;  /* [cap] */
    int cap;    /* power of two >= 2 * entries */
} llmlab_su_map;

/* Clears map for n entries (growing it); 0 on success, -1 out of memory. */
int llmlab_su_map_reset(const llmlab_host *h, llmlab_su_map *m, int n);
void llmlab_su_map_put(llmlab_su_map *m, int id, int val);
int llmlab_su_map_get(const llmlab_su_map *m, int id); /* -1 when absent */
void llmlab_su_map_free(const llmlab_host *h, llmlab_su_map *m);

#endif

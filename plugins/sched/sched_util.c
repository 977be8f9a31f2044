/* sched_util.c - plan ledger, preemption, victims, rank pass and id map shared
 * by the built-in schedulers (sched_util.h has the accounting rules). */
#include "sched_util.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- view accessors --------------------------------------------------------- */

int llmlab_su_blocks_of(int tokens, int block_size) {
    if (tokens <= 0) return 0;
    return (tokens + block_size - 1) / block_size;
}

int llmlab_su_watermark(const llmlab_sched_view *v) {
    return LLMLAB_SU_HAS(v, watermark_blocks) && v->watermark_blocks > 0 ? v->watermark_blocks : 0;
}

int llmlab_su_held(const llmlab_sched_view *v, int i) {
    if (LLMLAB_SU_HAS(v, blocks_held) && v->blocks_held) return v->blocks_held[i];
    const llmlab_sched_req *r = &v->reqs[i];
    return r->state == LLMLAB_REQ_RUNNING ? llmlab_su_blocks_of(r->computed, v->kv_block_size) : 0;
}

int llmlab_su_predicted(const llmlab_sched_view *v, int i) {
    if (LLMLAB_SU_HAS(v, predicted_out) && v->predicted_out) return v->predicted_out[i];
    return v->reqs[i].max_new;
}

int llmlab_su_swap_free(const llmlab_sched_view *v) {
    return LLMLAB_SU_HAS(v, swap_blocks_free) && v->swap_blocks_total > 0 ? v->swap_blocks_free : 0;
}

int llmlab_su_default_mode(const llmlab_sched_view *v) {
    return LLMLAB_SU_HAS(v, preempt_mode) && v->preempt_mode == LLMLAB_SU_SWAP ? LLMLAB_SU_SWAP
                                                                                 : LLMLAB_SU_RECOMPUTE;
}

int llmlab_su_mode(const char *param, const llmlab_sched_view *v, int swap_if_space) {
    if (param && !strcmp(param, "recompute")) return LLMLAB_SU_RECOMPUTE;
    if (param && !strcmp(param, "swap")) return LLMLAB_SU_SWAP;
    if (swap_if_space)
        return LLMLAB_SU_HAS(v, swap_blocks_total) && v->swap_blocks_total > 0 ? LLMLAB_SU_SWAP : LLMLAB_SU_RECOMPUTE;
    return llmlab_su_default_mode(v);
}

/* Blocks on the device for the request: a SWAPPED one's wait in host memory. */
static int on_device(const llmlab_sched_view *v, int i) {
    return v->reqs[i].state == LLMLAB_REQ_RUNNING ? llmlab_su_held(v, i) : 0;
}

int llmlab_su_need(const llmlab_sched_view *v, int i, int t) {
    const llmlab_sched_req *r = &v->reqs[i];
    int x = llmlab_su_in_prefill(r) ? t : v->decode_tokens;
    int total = llmlab_su_blocks_of(r->computed + x, v->kv_block_size);
    if (r->state == LLMLAB_REQ_SWAPPED && llmlab_su_held(v, i) > total) total = llmlab_su_held(v, i);
    int need = total - on_device(v, i);
    return need > 0 ? need : 0;
}

int llmlab_su_reserve(const llmlab_sched_view *v, int i) {
    const llmlab_sched_req *r = &v->reqs[i];
    int tokens = llmlab_su_in_prefill(r) ? r->target : r->computed + v->decode_tokens;
    int total = llmlab_su_blocks_of(tokens, v->kv_block_size);
    if (r->state == LLMLAB_REQ_SWAPPED && llmlab_su_held(v, i) > total) total = llmlab_su_held(v, i);
    return total - on_device(v, i);
}

/* ---- scratch buffers -------------------------------------------------------- */

void *llmlab_su_buf_get(const llmlab_host *h, llmlab_su_buf *b, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < bytes) cap *= 2;
        void *p = h->alloc(cap);
        if (!p) return NULL;
        h->free(b->p);
        b->p = p;
        b->cap = cap;
    }
    memset(b->p, 0, bytes);
    return b->p;
}

void llmlab_su_buf_free(const llmlab_host *h, llmlab_su_buf *b) {
    h->free(b->p);
    b->p = NULL;
    b->cap = 0;
}

/* ---- the plan ledger -------------------------------------------------------- */

void llmlab_su_begin(llmlab_su_ledger *L, const llmlab_sched_view *v, llmlab_sched_plan *plan, int budget,
                     uint8_t *handled) {
    memset(L, 0, sizeof *L);
    L->v = v;
    L->plan = plan;
    L->budget = budget < v->token_budget ? budget : v->token_budget;
    L->free = L->admit_free = v->kv_blocks_free;
    L->watermark = llmlab_su_watermark(v);
    L->swap_free = llmlab_su_swap_free(v);
    L->handled = handled;
    memset(handled, 0, (size_t)(v->n_reqs > 0 ? v->n_reqs : 0));
    for (int i = 0; i < v->n_reqs; i++) L->seqs += v->reqs[i].state == LLMLAB_REQ_RUNNING;
}

/* What running request i would get with extra_free more blocks and extra_slots
 * more slots: *t tokens, *need blocks, *reserve for an admission. */
static llmlab_su_why plan_tokens(const llmlab_su_ledger *L, int i, int max_tokens, int extra_free, int extra_slots,
                                 int *t, int *need, int *reserve) {
    const llmlab_sched_view *v = L->v;
    const llmlab_sched_req *r = &v->reqs[i];
    int admit = r->state != LLMLAB_REQ_RUNNING, prefill = llmlab_su_in_prefill(r);
    int free = L->free + extra_free;
    if (prefill) {
        *t = r->target - r->computed;
        if (*t > max_tokens) *t = max_tokens;
        if (*t > L->budget) *t = L->budget;
        if (*t <= 0) return LLMLAB_SU_NO_BUDGET;
    } else {
        if (L->budget < v->decode_tokens || max_tokens <= 0) return LLMLAB_SU_NO_BUDGET;
        *t = 1;
    }
    *need = llmlab_su_need(v, i, *t);
    if (*need > free && prefill && !admit) { /* a running chunk shrinks to the free blocks */
        int fit = (on_device(v, i) + free) * v->kv_block_size - r->computed;
        if (fit <= 0) return LLMLAB_SU_NO_KV;
        *t = fit < *t ? fit : *t;
        *need = llmlab_su_need(v, i, *t);
    }
    if (*need > free) return LLMLAB_SU_NO_KV;
    *reserve = *need;
    if (admit) {
        int res = llmlab_su_reserve(v, i);
        if (res > *reserve) *reserve = res;
        /* the watermark is waived when nothing runs (as the engine does), so a
         * request larger than pool - watermark can still start alone */
        int watermark = L->seqs - extra_slots > 0 ? L->watermark : 0;
        if (L->admit_free + extra_free - *reserve < watermark) return LLMLAB_SU_NO_KV;
        if (L->seqs - extra_slots >= v->max_seqs) return LLMLAB_SU_NO_SLOT;
    }
    return LLMLAB_SU_RAN;
}

llmlab_su_why llmlab_su_try_run(llmlab_su_ledger *L, int i, int max_tokens) {
    int t = 0, need = 0, reserve = 0;
    llmlab_su_why why = plan_tokens(L, i, max_tokens, 0, 0, &t, &need, &reserve);
    if (why != LLMLAB_SU_RAN) return why;
    const llmlab_sched_req *r = &L->v->reqs[i];
    int prefill = llmlab_su_in_prefill(r);
    L->plan->run_tokens[i] = t;
    L->budget -= prefill ? t : L->v->decode_tokens;
    L->free -= need;
    L->admit_free -= reserve;
    L->seqs += r->state != LLMLAB_REQ_RUNNING;
    L->scheduled++;
    L->handled[i] = 1;
    return LLMLAB_SU_RAN;
}

int llmlab_su_preempt(llmlab_su_ledger *L, int i, int mode) {
    int held = llmlab_su_held(L->v, i);
    if (mode == LLMLAB_SU_SWAP && L->swap_free < held) mode = LLMLAB_SU_RECOMPUTE;
    if (mode == LLMLAB_SU_SWAP) L->swap_free -= held;
    else mode = LLMLAB_SU_RECOMPUTE;
    L->plan->preempt[i] = (uint8_t)mode;
    L->plan->run_tokens[i] = 0;
    L->free += held;
    L->admit_free += held;
    L->seqs--;
    L->handled[i] = 1;
    return mode;
}

/* 1 when request a should be the victim rather than b (b < 0: a wins). */
static int worse(const llmlab_sched_view *v, const double *key, llmlab_su_victim policy, int a, int b) {
    if (b < 0) return 1;
    const llmlab_sched_req *ra = &v->reqs[a], *rb = &v->reqs[b];
    if (policy == LLMLAB_SU_VICTIM_MOST_BLOCKS) {
        int ha = llmlab_su_held(v, a), hb = llmlab_su_held(v, b);
        if (ha != hb) return ha > hb;
    }
    if (policy != LLMLAB_SU_VICTIM_LATEST) {
        double ka = key ? key[a] : ra->priority, kb = key ? key[b] : rb->priority;
        if (ka != kb) return ka > kb;
    }
    if (ra->arrival_s != rb->arrival_s) return ra->arrival_s > rb->arrival_s;
    return a > b; /* the view is in arrival order */
}

int llmlab_su_pick(const llmlab_sched_view *v, const uint8_t *eligible, const double *key,
                   llmlab_su_victim policy) {
    int best = -1;
    for (int j = 0; j < v->n_reqs; j++)
        if ((!eligible || eligible[j]) && v->reqs[j].state == LLMLAB_REQ_RUNNING && worse(v, key, policy, j, best))
            best = j;
    return best;
}

/* ---- rank-ordered passes ---------------------------------------------------- */

static int rank_cmp(const void *pa, const void *pb) {
    const llmlab_su_rank *a = pa, *b = pb;
    if (a->k1 != b->k1) return a->k1 < b->k1 ? -1 : 1;
    if (a->k2 != b->k2) return a->k2 < b->k2 ? -1 : 1;
    if (a->arrival != b->arrival) return a->arrival < b->arrival ? -1 : 1;
    if (a->id != b->id) return a->id < b->id ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

void llmlab_su_sort(llmlab_su_rank *r, int n) {
    if (n > 1) qsort(r, (size_t)n, sizeof *r, rank_cmp);
}

/* Preempts i for the pass and remembers the smallest key preempted (no key: the
 * pass admits nobody after a preemption, as vLLM). */
static void pass_preempt(llmlab_su_ledger *L, int i, const llmlab_su_pass_opts *o, double *victim_key_min) {
    llmlab_su_preempt(L, i, o->mode);
    double k = o->key ? o->key[i] : -HUGE_VAL;
    if (k < *victim_key_min) *victim_key_min = k;
}

/* A running request short of blocks: preempt victims later in the order until
 * it fits, or itself when no victim is left. */
static void run_or_make_room(llmlab_su_ledger *L, const llmlab_su_rank *order, int n, int k,
                             const llmlab_su_pass_opts *o, double *victim_key_min) {
    int i = order[k].idx;
    while (llmlab_su_try_run(L, i, INT_MAX) == LLMLAB_SU_NO_KV) {
        memset(o->scratch, 0, (size_t)L->v->n_reqs);
        for (int j = k + 1; j < n; j++) o->scratch[order[j].idx] = !L->handled[order[j].idx];
        int vic = llmlab_su_pick(L->v, o->scratch, o->key, o->victim);
        pass_preempt(L, vic >= 0 ? vic : i, o, victim_key_min);
        if (vic < 0) return;
    }
}

/* A waiting request that does not fit: preempt running requests of strictly
 * larger key when that makes it fit (checked first, so nothing is preempted in
 * vain).  Returns 1 when it was admitted. */
static int admit_by_preemption(llmlab_su_ledger *L, int i, const llmlab_su_pass_opts *o, double *victim_key_min) {
    const llmlab_sched_view *v = L->v;
    int held = 0, slots = 0, t, need, reserve;
    for (int j = 0; j < v->n_reqs; j++) {
        o->scratch[j] = v->reqs[j].state == LLMLAB_REQ_RUNNING && !L->handled[j] && o->key[j] > o->key[i];
        if (o->scratch[j]) held += llmlab_su_held(v, j), slots++;
    }
    if (slots == 0 || plan_tokens(L, i, INT_MAX, held, slots, &t, &need, &reserve) != LLMLAB_SU_RAN) return 0;
    for (;;) {
        llmlab_su_why why = llmlab_su_try_run(L, i, INT_MAX);
        if (why == LLMLAB_SU_RAN) return 1;
        if (why == LLMLAB_SU_NO_BUDGET) return 0;
        int vic = llmlab_su_pick(v, o->scratch, o->key, o->victim);
        if (vic < 0) return 0;
        o->scratch[vic] = 0;
        pass_preempt(L, vic, o, victim_key_min);
    }
}

void llmlab_su_rank_pass(llmlab_su_ledger *L, const llmlab_su_rank *order, int n, const llmlab_su_pass_opts *o) {
    int blocked = 0;
    double victim_key_min = HUGE_VAL;
    for (int k = 0; k < n; k++) {
        int i = order[k].idx;
        if (L->handled[i]) continue;
        llmlab_req_state s = L->v->reqs[i].state;
        if (s == LLMLAB_REQ_RUNNING) {
            run_or_make_room(L, order, n, k, o, &victim_key_min);
            continue;
        }
        if ((s != LLMLAB_REQ_WAITING && s != LLMLAB_REQ_SWAPPED) || blocked) continue;
        /* Nothing less urgent than a request just preempted gets in. */
        if ((o->key ? o->key[i] : 0) > victim_key_min) {
            blocked = 1;
            continue;
        }
        llmlab_su_why why = llmlab_su_try_run(L, i, INT_MAX);
        if (why == LLMLAB_SU_RAN) continue;
        if (why == LLMLAB_SU_NO_BUDGET || !o->preempt_for_admission || !admit_by_preemption(L, i, o, &victim_key_min))
            blocked = 1;
    }
}

void llmlab_su_pass_bufs_free(const llmlab_host *h, llmlab_su_pass_bufs *b) {
    llmlab_su_buf_free(h, &b->order);
    llmlab_su_buf_free(h, &b->handled);
    llmlab_su_buf_free(h, &b->scratch);
}

llmlab_su_rank *llmlab_su_order(const llmlab_host *h, llmlab_su_pass_bufs *b, const llmlab_sched_view *v) {
    return llmlab_su_buf_get(h, &b->order, (size_t)v->n_reqs * sizeof(llmlab_su_rank));
}

int llmlab_su_rank_live(const llmlab_sched_view *v, const double *key, llmlab_su_rank *order) {
    int m = 0;
    for (int i = 0; i < v->n_reqs; i++) {
        llmlab_req_state st = v->reqs[i].state;
        if (st != LLMLAB_REQ_FINISHED && st != LLMLAB_REQ_FUTURE)
            order[m++] = (llmlab_su_rank){key ? key[i] : 0, 0, v->reqs[i].arrival_s, v->reqs[i].id, i};
    }
    return m;
}

llmlab_status llmlab_su_plan_pass(const llmlab_host *h, llmlab_su_pass_bufs *b, const llmlab_sched_view *v,
                                  llmlab_sched_plan *plan, int budget, llmlab_su_rank *order, int m,
                                  llmlab_su_pass_opts o) {
    size_t n = (size_t)v->n_reqs;
    uint8_t *handled = llmlab_su_buf_get(h, &b->handled, n);
    o.scratch = llmlab_su_buf_get(h, &b->scratch, n);
    if (!handled || !o.scratch) return LLMLAB_ENOMEM;
    llmlab_su_sort(order, m);
    llmlab_su_ledger L;
    llmlab_su_begin(&L, v, plan, budget, handled);
    llmlab_su_rank_pass(&L, order, m, &o);
    return LLMLAB_OK;
}

/* ---- per-request state by id ------------------------------------------------ */

static unsigned map_hash(int id, int cap) { return ((uint32_t)id * 2654435761u) & (uint32_t)(cap - 1); }

int llmlab_su_map_reset(const llmlab_host *h, llmlab_su_map *m, int n) {
    int cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > m->cap) {
        int *k = h->alloc(sizeof(int) * (size_t)cap), *val = h->alloc(sizeof(int) * (size_t)cap);
        if (!k || !val) {
            h->free(k);
            h->free(val);
            return -1;
        }
        h->free(m->keys);
        h->free(m->vals);
        m->keys = k;
        m->vals = val;
        m->cap = cap;
    }
    for (int j = 0; j < m->cap; j++) m->keys[j] = INT32_MIN;
    return 0;
}

void llmlab_su_map_put(llmlab_su_map *m, int id, int val) {
    unsigned j = map_hash(id, m->cap);
    while (m->keys[j] != INT32_MIN && m->keys[j] != id) j = (j + 1) & (unsigned)(m->cap - 1);
    m->keys[j] = id;
    m->vals[j] = val;
}

int llmlab_su_map_get(const llmlab_su_map *m, int id) {
    if (!m->cap) return -1;
    unsigned j = map_hash(id, m->cap);
    while (m->keys[j] != INT32_MIN) {
        if (m->keys[j] == id) return m->vals[j];
        j = (j + 1) & (unsigned)(m->cap - 1);
    }
    return -1;
}

void llmlab_su_map_free(const llmlab_host *h, llmlab_su_map *m) {
    h->free(m->keys);
    h->free(m->vals);
    memset(m, 0, sizeof *m);
}

/* sampler.c - greedy, temperature, top-k, top-p and min-p sampling. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

int llmlab_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i])) best = i; /* strict: lowest wins */
    return best;
}

const char *llmlab_sampling_check(const llmlab_sampling *s) {
    if (!(s->temperature >= 0.0f) || !isfinite(s->temperature)) return "temperature must be >= 0";
    if (s->top_k < 0) return "top_k must be >= 0";
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) return "top_p must be in (0, 1]";
    if (!(s->min_p >= 0.0f && s->min_p <= 1.0f)) return "min_p must be in [0, 1]";
    return NULL;
}

/* Total order used for ranking: higher probability first, lower index on ties.
 * Being total, any correct sort gives the same ranking. */
static int ranks_before(const float *p, int i, int j) { return p[i] > p[j] || (p[i] == p[j] && i < j); }

static void sift_down(int *idx, int start, int end, const float *p) {
    int root = start;
    for (;;) {
        int child = 2 * root + 1;
        if (child >= end) return;
        /* max-heap on "ranks later", so the heap sort leaves the best first */
        if (child + 1 < end && ranks_before(p, idx[child], idx[child + 1])) child++;
        if (!ranks_before(p, idx[root], idx[child])) return;
        int t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = child;
    }
}

/* Heap sort of idx[n] by rank (no qsort: it has no context argument, and a
 * global key pointer would not be thread-safe). */
static void sort_by_rank(int *idx, int n, const float *p) {
    for (int s = n / 2 - 1; s >= 0; s--) sift_down(idx, s, n, p);
    for (int end = n - 1; end > 0; end--) {
        int t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(idx, 0, end, p);
    }
}

void llmlab_sampling_probs(float *probs, const float *logits, int n, const llmlab_sampling *s,
                           int *work) {
    if (s->temperature == 0.0f) {
        for (int i = 0; i < n; i++) probs[i] = 0.0f;
        probs[llmlab_argmax(logits, n)] = 1.0f;
        return;
    }
    float mx = logits[llmlab_argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        probs[i] = expf((logits[i] - mx) / s->temperature);
        sum += probs[i];
    }
    for (int i = 0; i < n; i++) probs[i] = (float)(probs[i] / sum);
    int filtered = s->top_k > 0 || s->top_p < 1.0f || s->min_p > 0.0f;
    if (!filtered) return;

    for (int i = 0; i < n; i++) work[i] = i;
    sort_by_rank(work, n, probs);
    int keep = n;
    if (s->top_k > 0 && s->top_k < keep) keep = s->top_k;
    if (s->top_p < 1.0f) {
        double cum = 0.0;
        for (int r = 0; r < keep; r++) {
            cum += probs[work[r]];
            if (cum >= s->top_p) {
                keep = r + 1;
                break;
            }
        }
    }
    if (s->min_p > 0.0f) {
        float floor_p = s->min_p * probs[work[0]];
        int r = 1;
        while (r < keep && probs[work[r]] >= floor_p) r++;
        keep = r;
    }
    double kept = 0.0;
    for (int r = 0; r < keep; r++) kept += probs[work[r]];
    for (int r = keep; r < n; r++) probs[work[r]] = 0.0f;
    for (int r = 0; r < keep; r++) probs[work[r]] = (float)(probs[work[r]] / kept);
}

int llmlab_sample_from(const float *p, int n, llmlab_rng *rng) {
    double u = llmlab_rng_uniform_d(rng), cum = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] <= 0.0f) continue;
        cum += p[i];
        last = i;
        if (u < cum) return i;
    }
    return last; /* rounding left u above the total: the last possible token */
}

int llmlab_sample(const float *logits, int n, const llmlab_sampling *s, llmlab_rng *rng,
                  float *probs, int *work) {
    if (s->temperature == 0.0f) return llmlab_argmax(logits, n);
    llmlab_sampling_probs(probs, logits, n, s, work);
    return llmlab_sample_from(probs, n, rng);
}

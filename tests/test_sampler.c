/* test_sampler.c - greedy tie-breaking, the filters, and seeded reproducibility. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/sampler.h"
#include "util/fixture_model.h"

Test(sampler, argmax_lowest_index_wins_ties_and_nan_never_wins) {
    float x[] = {1.0f, 3.0f, 2.0f, 3.0f, NAN};
    cr_assert_eq(llmlab_argmax(x, 5), 1);
    float y[] = {NAN, -1.0f, -1.0f};
    cr_assert_eq(llmlab_argmax(y, 3), 1);
}

Test(sampler, filters_keep_the_expected_support) {
    float logits[6] = {0.0f, 2.0f, 1.0f, 3.0f, -1.0f, 2.0f}; /* softmax order: 3, 1, 5, 2, 0, 4 */
    float p[6];
    int work[6];
    llmlab_sampling s = {1.0f, 2, 1.0f, 0.0f};
    llmlab_sampling_probs(p, logits, 6, &s, work);
    cr_assert(p[3] > 0 && p[1] > 0 && p[5] == 0 && p[2] == 0, "top-k 2 keeps ids 3 and 1 (tie 1/5: lower id)");
    cr_assert_float_eq(p[3] + p[1], 1.0f, 1e-6);
    double e[6], z = 0;
    for (int i = 0; i < 6; i++) z += (e[i] = exp(logits[i]));
    s = (llmlab_sampling){1.0f, 0, 0.8f, 0.0f};
    llmlab_sampling_probs(p, logits, 6, &s, work);
    /* p(3) = 0.516, + p(1) = 0.705, + p(5) = 0.895 >= 0.8: three kept */
    cr_assert(p[3] > 0 && p[1] > 0 && p[5] > 0 && p[2] == 0);
    cr_assert_float_eq(p[3], (float)(e[3] / (e[3] + e[1] + e[5])), 1e-6);
    s = (llmlab_sampling){1.0f, 0, 1.0f, 0.3f}; /* keep p >= 0.3 * p_max: e^-1.2 = 0.30 -> within 1.2 nats */
    llmlab_sampling_probs(p, logits, 6, &s, work);
    cr_assert(p[3] > 0 && p[1] > 0 && p[5] > 0 && p[2] == 0 && p[0] == 0);
}

Test(sampler, temperature_sampling_matches_softmax_frequencies) {
    uint64_t seed = fixture_seed("sampler");
    float logits[4] = {0.5f, 1.5f, -0.5f, 1.0f};
    llmlab_sampling s = {0.8f, 0, 1.0f, 0.0f};
    float p[4];
    int work[4], count[4] = {0};
    llmlab_sampling_probs(p, logits, 4, &s, work);
    llmlab_rng rng;
    llmlab_rng_seed(&rng, seed, 0);
    enum { N = 200000 };
    for (int i = 0; i < N; i++) count[llmlab_sample(logits, 4, &s, &rng, p, work)]++;
    llmlab_sampling_probs(p, logits, 4, &s, work);
    /* 5-sigma binomial bounds: false alarm probability ~1e-6 per category */
    for (int i = 0; i < 4; i++) {
        double sd = sqrt(N * p[i] * (1 - p[i]));
        cr_assert(fabs(count[i] - N * p[i]) < 5 * sd, "id %d: %d draws, expected %.0f", i, count[i], N * p[i]);
    }
}

Test(sampler, seeded_streams_are_reproducible_and_independent) {
    llmlab_rng a, b, c;
    llmlab_rng_seed(&a, 42, 3);
    llmlab_rng_seed(&b, 42, 3);
    llmlab_rng_seed(&c, 42, 4);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = llmlab_rng_next(&a);
        cr_assert_eq(x, llmlab_rng_next(&b));
        same_c += x == llmlab_rng_next(&c);
    }
    cr_assert_eq(same_c, 0);
}

Test(sampler, bad_settings_are_named) {
    llmlab_sampling s = {-1.0f, 0, 1.0f, 0.0f};
    cr_assert(strstr(llmlab_sampling_check(&s), "temperature"));
    s = (llmlab_sampling){1.0f, 0, 0.0f, 0.0f};
    cr_assert(strstr(llmlab_sampling_check(&s), "top_p"));
    s = (llmlab_sampling){1.0f, -2, 1.0f, 0.0f};
    cr_assert(strstr(llmlab_sampling_check(&s), "top_k"));
    s = (llmlab_sampling){1.0f, 0, 1.0f, 1.5f};
    cr_assert(strstr(llmlab_sampling_check(&s), "min_p"));
    s = LLMLAB_SAMPLING_GREEDY;
    cr_assert_null(llmlab_sampling_check(&s));
}

/* fixture_model.c - temp-dir synthetic models for the test suites. */
#include "fixture_model.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const fixture_shape fixture_shapes[] = {
    /* name              vocab dim lay heads kv ffn  hd tie bias dtype */
    {"gqa2-untied",      509,  64,  2, 4, 2, 172,  0, 0, 0, LLMLAB_DTYPE_F32},
    {"mqa-tied",         300,  64,  2, 4, 1, 96,   0, 1, 0, LLMLAB_DTYPE_F32},
    {"mha-qkvbias",      257,  64,  2, 2, 2, 128,  0, 0, 1, LLMLAB_DTYPE_F32},
    {"hd128-gqa",        263, 128,  2, 2, 1, 200, 128, 0, 0, LLMLAB_DTYPE_F32},
    {"bf16-hd64",        509, 128,  2, 2, 2, 160, 64, 0, 0, LLMLAB_DTYPE_BF16},
    {"f16-tied-bias",    300, 128,  1, 4, 2, 192,  0, 1, 1, LLMLAB_DTYPE_F16},
};
const int fixture_n_shapes = (int)(sizeof fixture_shapes / sizeof fixture_shapes[0]);

void fixture_load(fixture_model *f, const fixture_shape *s, uint64_t seed) {
    llmlab_synth_opts o;
    cr_assert_eq(llmlab_synth_preset(&o, "tiny"), 0);
    o.cfg.vocab_size = s->vocab;
    o.cfg.dim = s->dim;
    o.cfg.n_layers = s->layers;
    o.cfg.n_heads = s->heads;
    o.cfg.n_kv_heads = s->kv_heads;
    o.cfg.ffn_dim = s->ffn;
    o.cfg.head_dim = s->head_dim ? s->head_dim : s->dim / s->heads;
    o.cfg.tie_embeddings = s->tie;
    o.cfg.qkv_bias = s->qkv_bias;
    if (s->qkv_bias) {
        o.cfg.arch = LLMLAB_ARCH_QWEN2;
        snprintf(o.cfg.arch_name, sizeof o.cfg.arch_name, "Qwen2ForCausalLM");
    }
    o.dtype = s->dtype;
    o.seed = seed;
    snprintf(f->dir, sizeof f->dir, "/tmp/llmlab-test-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    llmlab_err err = {0};
    cr_assert_eq(llmlab_synth_write(&o, f->dir, &err), LLMLAB_OK, "synth %s: %s", s->name, err.msg);
    f->m = NULL;
    cr_assert_eq(llmlab_model_load(&f->m, f->dir, &err), LLMLAB_OK, "load %s: %s", s->name, err.msg);
}

void fixture_rmtree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) fixture_rmtree(path);
        else unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void fixture_free(fixture_model *f) {
    llmlab_model_free(f->m);
    f->m = NULL;
    fixture_rmtree(f->dir);
}

uint64_t fixture_seed(const char *test_name) {
    const char *env = getenv("LLMLAB_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10)
                        : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    fprintf(stderr, "[%s] seed %llu (replay with LLMLAB_TEST_SEED=%llu)\n", test_name,
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

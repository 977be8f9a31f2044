/* derive.c - see derive.h.  Tensors are converted and streamed one chunk at a
 * time, so an 8B source needs only a few megabytes of memory. */
#include "derive.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dtype.h"
#include "error.h"

enum { CHUNK = 1 << 20 }; /* elements converted per write */

/* 1 when the tensor belongs to a layer the copy drops. */
static int dropped(const char *name, int n_layers) {
    int l;
    return sscanf(name, "model.layers.%d.", &l) == 1 && l >= n_layers;
}

static llmlab_st_dtype st_of(llmlab_dtype t) {
    return t == LLMLAB_DTYPE_F32 ? LLMLAB_ST_F32 : t == LLMLAB_DTYPE_F16 ? LLMLAB_ST_F16 : LLMLAB_ST_BF16;
}

static int from_st(llmlab_st_dtype t, llmlab_dtype *out) {
    switch (t) {
    case LLMLAB_ST_F32: *out = LLMLAB_DTYPE_F32; return 0;
    case LLMLAB_ST_F16: *out = LLMLAB_DTYPE_F16; return 0;
    case LLMLAB_ST_BF16: *out = LLMLAB_DTYPE_BF16; return 0;
    default: return -1;
    }
}

static void from_f32(void *dst, const float *src, llmlab_dtype t, size_t n) {
    if (t == LLMLAB_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = t == LLMLAB_DTYPE_F16 ? llmlab_f32_to_f16(src[i]) : llmlab_f32_to_bf16(src[i]);
}

/* Streams one tensor converted to dtype. */
static llmlab_status write_converted(llmlab_st_writer *w, const llmlab_st_tensor *t, llmlab_dtype dtype, float *f32,
                                     void *out, llmlab_err *err) {
    llmlab_dtype src;
    if (from_st(t->dtype, &src))
        return llmlab_err_set(err, LLMLAB_EINVAL, "derive: tensor %s has dtype %s (only f32/f16/bf16 convert)",
                              t->name, llmlab_st_dtype_name(t->dtype));
    size_t n = t->nbytes / llmlab_dtype_size(src);
    for (size_t done = 0; done < n; done += CHUNK) {
        size_t m = n - done < CHUNK ? n - done : CHUNK;
        llmlab_to_f32(f32, (const char *)t->data + done * llmlab_dtype_size(src), src, m);
        from_f32(out, f32, dtype, m);
        llmlab_status st = llmlab_st_writer_data(w, out, m * llmlab_dtype_size(dtype), err);
        if (st) return st;
    }
    return LLMLAB_OK;
}

static llmlab_status write_config(const llmlab_config *c, const char *dir, llmlab_err *err) {
    char *json = llmlab_config_to_json(c);
    if (!json) return llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory");
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(json, f) >= 0;
    if (f && fclose(f)) ok = 0;
    free(json);
    if (!ok || rename(tmp, path)) {
        remove(tmp);
        return llmlab_err_set(err, LLMLAB_EIO, "derive: cannot write %s: %s", path, strerror(errno));
    }
    return LLMLAB_OK;
}

llmlab_status llmlab_derive_write(const llmlab_model *src, const llmlab_derive_opts *o, const char *dir,
                                  llmlab_err *err) {
    if (src->gguf)
        return llmlab_err_set(err, LLMLAB_EUNSUPPORTED, "derive: %s is a GGUF model; derive copies Hugging Face "
                              "safetensors models (derive from the source model, then `llmlab convert` the result)",
                              src->path);
    llmlab_config c = src->cfg;
    int keep = o->n_layers > 0 ? o->n_layers : c.n_layers;
    if (keep > c.n_layers)
        return llmlab_err_set(err, LLMLAB_EINVAL, "derive: --layers %d but the source has %d layers", keep, c.n_layers);
    c.n_layers = keep;
    c.torch_dtype = o->dtype;
    const llmlab_st_set *set = &src->st;
    llmlab_st_write_tensor *hdr = calloc((size_t)set->n_tensors, sizeof *hdr);
    const llmlab_st_tensor **pick = calloc((size_t)set->n_tensors, sizeof *pick);
    float *f32 = malloc(CHUNK * sizeof(float));
    void *out = malloc(CHUNK * sizeof(float));
    llmlab_status st = (!hdr || !pick || !f32 || !out) ? llmlab_err_set(err, LLMLAB_ENOMEM, "out of memory") : LLMLAB_OK;
    int n = 0;
    for (int i = 0; !st && i < set->n_tensors; i++) {
        const llmlab_st_tensor *t = &set->tensors[i];
        if (dropped(t->name, keep)) continue;
        pick[n] = t;
        hdr[n] = (llmlab_st_write_tensor){t->name, st_of(o->dtype), t->ndim, {0}, NULL};
        memcpy(hdr[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    if (!st && mkdir(dir, 0777) && errno != EEXIST)
        st = llmlab_err_set(err, LLMLAB_EIO, "derive: cannot create %s: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    llmlab_st_writer *w = NULL;
    if (!st) st = llmlab_st_writer_open(&w, path, hdr, n, err);
    for (int i = 0; !st && i < n; i++) st = write_converted(w, pick[i], o->dtype, f32, out, err);
    if (!st) st = llmlab_st_writer_finish(w, err);
    else llmlab_st_writer_abort(w);
    if (!st) st = write_config(&c, dir, err);
    free(hdr);
    free(pick);
    free(f32);
    free(out);
    return st;
}

/* lua_text.c - text in and out of Lua: prompts encoded with the model's
 * tokenizer, decoded output text, m:encode / m:decode / m:tokenizer,
 * llmlab.chat, llmlab.prompts (text workloads from files) and e:perplexity. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "error.h"
#include "lua_internal.h"
#include "perplexity.h"
#include "tokenizer.h"

/* ---- prompts and output text ---------------------------------------------------------- */

/* A table of token ids at idx as a malloc'd array; what names it in errors. */
static int32_t *read_id_table(lua_State *L, int idx, const char *what, int *n) {
    lua_Integer len = luaL_len(L, idx);
    int32_t *ids = malloc((size_t)(len + 1) * sizeof *ids);
    if (!ids) luaL_error(L, "out of memory");
    for (lua_Integer i = 1; i <= len; i++) {
        lua_geti(L, idx, i);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        lua_pop(L, 1);
        if (!ok || v < 0 || v > INT32_MAX) {
            free(ids);
            luaL_error(L, "%s %d is not a non-negative integer", what, (int)i);
        }
        ids[i - 1] = (int32_t)v;
    }
    *n = (int)len;
    return ids;
}

/* Encodes text; with add_special the tokenizer's post-processor runs (a leading
 * BOS for Llama tokenizers), except that a text already starting with the BOS
 * (chat-template output: "<s>[INST] ...") does not get a second one. */
static int32_t *encode_text(lua_State *L, const llmlab_tokenizer *tok, const char *s, size_t len, int add_special,
                            int *n) {
    int32_t *ids = NULL;
    llmlab_err err = {0};
    if (llmlab_tokenizer_encode(tok, s, len, add_special, &ids, n, &err)) luaL_error(L, "encoding text: %s", err.msg);
    int32_t bos = llmlab_tokenizer_bos(tok);
    if (add_special && bos >= 0 && *n >= 2 && ids[0] == bos && ids[1] == bos) {
        memmove(ids, ids + 1, (size_t)(*n - 1) * sizeof *ids);
        (*n)--;
    }
    return ids;
}

int32_t *llmlab_lua_read_prompt_tok(lua_State *L, int idx, const llmlab_tokenizer *tok, int add_special, int *n) {
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return encode_text(L, tok, s, len, add_special, n);
    }
    if (lua_type(L, idx) != LUA_TTABLE) luaL_error(L, "prompt must be a string or a table of token ids");
    return read_id_table(L, idx, "prompt token", n);
}

/* 1 when the tokenizer can decode id: the fallback decodes every id (>= 256 as
 * "<|id|>"); a tokenizer.json has no text for the padding rows of an embedding
 * larger than its vocabulary. */
static int decodable(const llmlab_tokenizer *tok, int32_t id) {
    return !strcmp(llmlab_tokenizer_kind(tok), "bytes") ? id >= 0 : llmlab_tokenizer_piece(tok, id) != NULL;
}

void llmlab_lua_push_text(lua_State *L, const llmlab_tokenizer *tok, const int32_t *ids, int n) {
    int32_t *keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
    if (!keep) luaL_error(L, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (decodable(tok, ids[i])) keep[k++] = ids[i];
    char *text = NULL;
    size_t len = 0;
    llmlab_err err = {0};
    llmlab_status st = llmlab_tokenizer_decode(tok, keep, k, 1, &text, &len, &err);
    free(keep);
    if (st) luaL_error(L, "decoding output: %s", err.msg);
    lua_pushlstring(L, text, len);
    free(text);
}

/* ---- m:encode, m:decode, m:tokenizer ----------------------------------------------------- */

static const llmlab_tokenizer *model_tok(lua_State *L) {
    llmlab_lua_model *u = luaL_checkudata(L, 1, "llmlab.model");
    if (!u->m) luaL_error(L, "the model is closed");
    return u->m->tok;
}

/* m:encode(text [, {special = true}]) -> {ids...} */
static int model_encode(lua_State *L) {
    const llmlab_tokenizer *tok = model_tok(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int special = 1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"special", NULL};
        llmlab_lua_check_keys(L, 3, "encode", keys);
        special = llmlab_lua_opt_bool(L, 3, "special", 1);
    }
    int32_t *ids = NULL;
    int n = 0;
    llmlab_err err = {0};
    if (llmlab_tokenizer_encode(tok, s, len, special, &ids, &n, &err)) return llmlab_lua_fail(L, &err);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    free(ids);
    return 1;
}

/* m:decode(ids [, {skip_special = false}]) -> text */
static int model_decode(lua_State *L) {
    const llmlab_tokenizer *tok = model_tok(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int skip = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"skip_special", NULL};
        llmlab_lua_check_keys(L, 3, "decode", keys);
        skip = llmlab_lua_opt_bool(L, 3, "skip_special", 0);
    }
    int n = 0;
    int32_t *ids = read_id_table(L, 2, "decode: id", &n);
    char *text = NULL;
    size_t len = 0;
    llmlab_err err = {0};
    llmlab_status st = llmlab_tokenizer_decode(tok, ids, n, skip, &text, &len, &err);
    free(ids);
    if (st) return llmlab_lua_fail(L, &err);
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

/* m:tokenizer() -> {kind, vocab_size, bos, eos} (bos/eos nil when absent) */
static int model_tokenizer(lua_State *L) {
    const llmlab_tokenizer *tok = model_tok(L);
    lua_newtable(L);
    lua_pushstring(L, llmlab_tokenizer_kind(tok));
    lua_setfield(L, -2, "kind");
    llmlab_lua_setint(L, "vocab_size", llmlab_tokenizer_vocab_size(tok));
    if (llmlab_tokenizer_bos(tok) >= 0) llmlab_lua_setint(L, "bos", llmlab_tokenizer_bos(tok));
    if (llmlab_tokenizer_eos(tok) >= 0) llmlab_lua_setint(L, "eos", llmlab_tokenizer_eos(tok));
    return 1;
}

int llmlab_lua_model_method(lua_State *L, const char *name) {
    static const luaL_Reg methods[] = {
        {"encode", model_encode}, {"decode", model_decode}, {"tokenizer", model_tokenizer}, {NULL, NULL}};
    for (int i = 0; methods[i].name; i++)
        if (!strcmp(name, methods[i].name)) {
            lua_pushcfunction(L, methods[i].func);
            return 1;
        }
    return 0;
}

/* ---- llmlab.chat ----------------------------------------------------------------------- */

/* Renders the message list at idx (plus an optional system text put first) with
 * the template; pushes the text.  what names the caller in errors. */
static void push_chat(lua_State *L, const char *what, const char *name, int idx, const char *system, int gen) {
    if (!llmlab_chat_template_known(name))
        luaL_error(L, "%s: unknown chat template '%s' (templates: %s)", what, name, llmlab_chat_template_names());
    int n = (int)luaL_len(L, idx), extra = system ? 1 : 0;
    if (n + extra == 0) luaL_error(L, "%s: no messages", what);
    llmlab_chat_msg *m = lua_newuserdatauv(L, (size_t)(n + extra) * sizeof *m, 0); /* GC'd on error */
    if (system) m[0] = (llmlab_chat_msg){"system", system};
    for (int i = 0; i < n; i++) {
        if (lua_geti(L, idx, i + 1) != LUA_TTABLE) luaL_error(L, "%s: message %d is not a table {role=, content=}", what, i + 1);
        int t = lua_gettop(L);
        if (lua_getfield(L, t, "role") != LUA_TSTRING || lua_getfield(L, t, "content") != LUA_TSTRING)
            luaL_error(L, "%s: message %d needs string fields 'role' and 'content'", what, i + 1);
        m[extra + i] = (llmlab_chat_msg){lua_tostring(L, -2), lua_tostring(L, -1)};
        lua_pop(L, 3); /* the strings stay alive: the message list references them */
    }
    char *text = NULL;
    size_t len = 0;
    llmlab_err err = {0};
    if (llmlab_chat_render(name, m, n + extra, gen, &text, &len, &err)) luaL_error(L, "%s: %s", what, err.msg);
    lua_pushlstring(L, text, len);
    free(text);
    lua_remove(L, -2); /* the message array */
}

/* llmlab.chat(template, messages [, {generation_prompt = true}]) -> text */
int llmlab_lua_chat(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int gen = 1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"generation_prompt", NULL};
        llmlab_lua_check_keys(L, 3, "llmlab.chat", keys);
        gen = llmlab_lua_opt_bool(L, 3, "generation_prompt", 1);
    }
    push_chat(L, "llmlab.chat", name, 2, NULL, gen);
    return 1;
}

/* ---- llmlab.prompts -------------------------------------------------------------------- */

typedef struct {
    const char *file, *field, *chat, *system;
    int jsonl, max_new, limit;
} prompts_opts;

/* Pushes request.prompt for a text: the chat-wrapped text (encoded later without
 * special tokens: the template holds the BOS) or the text itself. */
static void set_text_prompt(lua_State *L, const prompts_opts *o, const char *text, size_t len) {
    if (o->chat) {
        lua_createtable(L, 1, 0);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, "user");
        lua_setfield(L, -2, "role");
        lua_pushlstring(L, text, len);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, 1);
        push_chat(L, "llmlab.prompts", o->chat, lua_gettop(L), o->system, 1);
        lua_remove(L, -2);
        lua_pushboolean(L, 0);
        lua_setfield(L, -3, "special");
    } else {
        lua_pushlstring(L, text, len);
    }
    lua_setfield(L, -2, "prompt");
}

/* The cJSON array of ids as a Lua table at the top of the stack. */
static void push_json_ids(lua_State *L, const cJSON *a, const char *where) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0)
        luaL_error(L, "%s: 'prompt_ids' must be a non-empty array of token ids", where);
    lua_createtable(L, cJSON_GetArraySize(a), 0);
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX || v->valuedouble != (double)(int32_t)v->valuedouble)
            luaL_error(L, "%s: prompt_ids[%d] is not a non-negative integer", where, i + 1);
        lua_pushinteger(L, (lua_Integer)v->valuedouble);
        lua_rawseti(L, -2, ++i);
    }
}

/* Pushes the JSON "messages" list as Lua {{role=, content=}, ...}. */
static void push_json_messages(lua_State *L, const cJSON *a, const char *where) {
    if (!cJSON_IsArray(a)) luaL_error(L, "%s: 'messages' must be an array of {\"role\", \"content\"}", where);
    lua_newtable(L);
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(v, "role"), *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (!cJSON_IsString(r) || !cJSON_IsString(c))
            luaL_error(L, "%s: messages[%d] needs string fields \"role\" and \"content\"", where, i + 1);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, r->valuestring);
        lua_setfield(L, -2, "role");
        lua_pushstring(L, c->valuestring);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, ++i);
    }
}

/* One JSONL object into the request table at the top of the stack. */
static void jsonl_request(lua_State *L, const prompts_opts *o, const cJSON *obj, const char *where) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, o->field);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(obj, "prompt_ids");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!!text + !!ids + !!msgs != 1)
        luaL_error(L, "%s: give exactly one of \"%s\", \"prompt_ids\" or \"messages\"", where, o->field);
    if (text) {
        if (!cJSON_IsString(text)) luaL_error(L, "%s: \"%s\" must be a string", where, o->field);
        set_text_prompt(L, o, text->valuestring, strlen(text->valuestring));
    } else if (ids) {
        push_json_ids(L, ids, where);
        lua_setfield(L, -2, "prompt");
    } else {
        if (!o->chat) luaL_error(L, "%s: \"messages\" needs a chat template (chat = \"llama-3\", ...)", where);
        push_json_messages(L, msgs, where);
        int list = lua_gettop(L), has_system = 0;
        if (lua_geti(L, list, 1) == LUA_TTABLE && lua_getfield(L, -1, "role") == LUA_TSTRING)
            has_system = !strcmp(lua_tostring(L, -1), "system");
        lua_settop(L, list);
        push_chat(L, where, o->chat, list, has_system ? NULL : o->system, 1);
        lua_remove(L, -2);
        lua_setfield(L, -2, "prompt");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "special");
    }
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(obj, "max_new");
    if (!mn) mn = cJSON_GetObjectItemCaseSensitive(obj, "output_len");
    if (mn) {
        if (!cJSON_IsNumber(mn) || mn->valuedouble < 0 || mn->valuedouble > 1 << 24 || mn->valuedouble != (double)(int)mn->valuedouble)
            luaL_error(L, "%s: max_new/output_len must be a non-negative integer", where);
        lua_pushinteger(L, (lua_Integer)mn->valuedouble);
        lua_setfield(L, -2, "max_new");
    }
}

static int json_gc(lua_State *L) {
    cJSON **holder = luaL_checkudata(L, 1, "llmlab.json");
    cJSON_Delete(*holder);
    *holder = NULL;
    return 0;
}

/* Adds one request for line `text` (already without its newline) to the list at
 * `list`; returns 1 when one was added (blank lines are skipped). */
static int add_line(lua_State *L, const prompts_opts *o, int list, char *text, size_t len, int lineno) {
    if (len && text[len - 1] == '\r') text[--len] = 0;
    size_t k = 0;
    while (k < len && (text[k] == ' ' || text[k] == '\t')) k++;
    if (k == len) return 0;
    char where[600];
    snprintf(where, sizeof where, "llmlab.prompts: %s:%d", o->file, lineno);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, o->max_new);
    lua_setfield(L, -2, "max_new");
    if (!o->jsonl) {
        set_text_prompt(L, o, text, len);
    } else {
        /* the parsed tree lives in a userdata whose __gc frees it, so the Lua
         * errors below (bad fields, chat template errors) do not leak it */
        cJSON **holder = lua_newuserdatauv(L, sizeof *holder, 0);
        *holder = NULL;
        if (luaL_newmetatable(L, "llmlab.json")) {
            lua_pushcfunction(L, json_gc);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        const char *end = NULL;
        *holder = cJSON_ParseWithLengthOpts(text, len, &end, 0);
        if (!*holder || !cJSON_IsObject(*holder)) {
            char near[48] = ""; /* luaL_error has no precision in its format */
            if (end && *end) snprintf(near, sizeof near, " near: %.40s", end);
            luaL_error(L, "%s: not a JSON object%s", where, near);
        }
        lua_insert(L, -2); /* holder below the request */
        jsonl_request(L, o, *holder, where);
        lua_remove(L, -2);
    }
    lua_rawseti(L, list, (lua_Integer)luaL_len(L, list) + 1);
    return 1;
}

static void read_prompts_opts(lua_State *L, prompts_opts *o) {
    luaL_checktype(L, 1, LUA_TTABLE);
    static const char *const keys[] = {"file", "format", "field", "max_new", "chat", "system", "limit", NULL};
    llmlab_lua_check_keys(L, 1, "llmlab.prompts", keys);
    o->file = llmlab_lua_opt_str(L, 1, "file", NULL);
    if (!o->file) luaL_error(L, "llmlab.prompts: 'file' is required");
    size_t fl = strlen(o->file);
    const char *fmt = llmlab_lua_opt_str(L, 1, "format", fl > 6 && !strcmp(o->file + fl - 6, ".jsonl") ? "jsonl" : "lines");
    if (strcmp(fmt, "lines") && strcmp(fmt, "jsonl"))
        luaL_error(L, "llmlab.prompts: format '%s' is not \"lines\" or \"jsonl\"", fmt);
    o->jsonl = !strcmp(fmt, "jsonl");
    o->field = llmlab_lua_opt_str(L, 1, "field", "prompt");
    o->max_new = llmlab_lua_opt_int(L, 1, "max_new", 32);
    o->chat = llmlab_lua_opt_str(L, 1, "chat", NULL);
    o->system = llmlab_lua_opt_str(L, 1, "system", NULL);
    o->limit = llmlab_lua_opt_int(L, 1, "limit", 0);
    if (o->max_new < 0) luaL_error(L, "llmlab.prompts: max_new must be >= 0");
    if (o->limit < 0) luaL_error(L, "llmlab.prompts: limit must be >= 0 (0 = all)");
    if (o->chat && !llmlab_chat_template_known(o->chat))
        luaL_error(L, "llmlab.prompts: unknown chat template '%s' (templates: %s)", o->chat, llmlab_chat_template_names());
    if (o->system && !o->chat) luaL_error(L, "llmlab.prompts: 'system' needs a chat template ('chat')");
}

/* The file's bytes (NUL-terminated) in a Lua userdata at the top of the stack. */
static char *push_file(lua_State *L, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) luaL_error(L, "llmlab.prompts: cannot open %s: %s", path, strerror(errno));
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *buf = n >= 0 ? lua_newuserdatauv(L, (size_t)n + 1, 0) : NULL;
    int ok = buf && fseek(f, 0, SEEK_SET) == 0 && fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) luaL_error(L, "llmlab.prompts: cannot read %s", path);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* llmlab.prompts{file=, format=, field=, max_new=, chat=, system=, limit=} -> {{prompt=, max_new=}, ...} */
int llmlab_lua_prompts(lua_State *L) {
    prompts_opts o;
    read_prompts_opts(L, &o);
    size_t len = 0;
    char *buf = push_file(L, o.file, &len);
    lua_newtable(L);
    int list = lua_gettop(L), count = 0, lineno = 0;
    for (size_t a = 0; a < len && (o.limit == 0 || count < o.limit);) {
        char *nl = memchr(buf + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - buf) : len;
        buf[b] = 0;
        count += add_line(L, &o, list, buf + a, b - a, ++lineno);
        a = b + 1;
    }
    if (count == 0) luaL_error(L, "llmlab.prompts: %s holds no prompts", o.file);
    return 1;
}

/* ---- e:perplexity -------------------------------------------------------------------- */

static void push_ppl(lua_State *L, const llmlab_ppl_result *r) {
    lua_newtable(L);
    llmlab_lua_setnum(L, "ppl", r->ppl);
    llmlab_lua_setnum(L, "nll", r->mean_nll);
    llmlab_lua_setint(L, "tokens", r->scored);
    llmlab_lua_setint(L, "windows", r->windows);
    llmlab_lua_setnum(L, "tok_per_s", r->tok_per_s);
    llmlab_lua_setint(L, "ctx", r->ctx);
    llmlab_lua_setint(L, "stride", r->stride);
    llmlab_lua_setint(L, "input_tokens", r->n_tokens);
    lua_createtable(L, r->scored, 0);
    for (int i = 0; i < r->scored; i++) {
        lua_pushnumber(L, r->nll[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "token_nll");
    lua_createtable(L, r->scored, 0);
    for (int i = 0; i < r->scored; i++) {
        lua_pushinteger(L, r->pos[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "token_pos");
}

/* The tokens to score: text (bos default on) or an id table (bos default off). */
static int32_t *ppl_tokens(lua_State *L, const llmlab_tokenizer *tok, int bos, int *n) {
    llmlab_err err = {0};
    int32_t *ids = NULL;
    if (lua_type(L, 2) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, 2, &len);
        if (llmlab_ppl_encode(tok, s, len, bos != 0, &ids, n, &err)) luaL_error(L, "%s", err.msg);
        return ids;
    }
    if (lua_type(L, 2) != LUA_TTABLE) luaL_error(L, "perplexity: the text must be a string or a table of token ids");
    int m = 0;
    int32_t *t = read_id_table(L, 2, "perplexity: token", &m);
    int32_t b = bos == 1 ? llmlab_tokenizer_bos(tok) : -1;
    if (b < 0) {
        *n = m;
        return t;
    }
    ids = malloc(((size_t)m + 1) * sizeof *ids);
    if (!ids) {
        free(t);
        luaL_error(L, "out of memory");
    }
    ids[0] = b;
    if (m) memcpy(ids + 1, t, (size_t)m * sizeof *ids);
    free(t);
    *n = m + 1;
    return ids;
}

/* e:perplexity(text_or_ids [, {ctx=, stride=, bos=}]) -> {ppl, nll, tokens, windows, tok_per_s, token_nll, ...} */
int llmlab_lua_engine_perplexity(lua_State *L) {
    llmlab_lua_engine *u = luaL_checkudata(L, 1, "llmlab.engine");
    llmlab_ppl_opts po = {0};
    int bos = -1; /* -1: the default for the input's kind */
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        static const char *const keys[] = {"ctx", "stride", "bos", NULL};
        llmlab_lua_check_keys(L, 3, "perplexity", keys);
        po.ctx = llmlab_lua_opt_int(L, 3, "ctx", 0);
        po.stride = llmlab_lua_opt_int(L, 3, "stride", 0);
        bos = llmlab_lua_opt_bool(L, 3, "bos", -1);
        if (lua_getfield(L, 3, "ctx") != LUA_TNIL && po.ctx < 2) luaL_error(L, "perplexity: ctx = %d must be >= 2", po.ctx);
        if (lua_getfield(L, 3, "stride") != LUA_TNIL && po.stride < 1)
            luaL_error(L, "perplexity: stride = %d must be >= 1", po.stride);
        lua_pop(L, 2);
    }
    const llmlab_model *m = llmlab_engine_model(u->e);
    int n = 0;
    int32_t *ids = ppl_tokens(L, m->tok, bos, &n);
    llmlab_ppl_result *r = NULL;
    llmlab_err err = {0};
    llmlab_status st = llmlab_perplexity(u->e, ids, n, &po, &r, &err);
    free(ids);
    if (st) return llmlab_lua_fail(L, &err);
    push_ppl(L, r);
    llmlab_ppl_result_free(r);
    return 1;
}

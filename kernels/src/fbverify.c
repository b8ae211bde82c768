/* Structural verifier of the graph FlatBuffer, with the checks and limits of
 * sdk/dfxsdk/_fbverify.py; its layout table (FB_LAYOUTS of dfx_schema.h) is
 * generated from that file's by schema/generate.py. Every offset, vtable,
 * vector, string and union is proven to lie inside the buffer and to be
 * aligned before the decoder reads anything. */
#include "dfx_internal.h"
#include "dfx_schema.h"

#define MAX_DEPTH 16
#define MAX_TABLES 1000000

typedef struct {
    int nf;
    signed char kind[FB_MAX_SLOTS];
    signed char sub[FB_MAX_SLOTS];
    unsigned required;     /* bit i: slot i is required */
} layout_t;

/* Slot kinds per table (FB_T_ order); sub = table for FB_K_T / FB_K_VT. Op
 * tables follow FB_OP_TABLE_0 in union order. */
static const layout_t LAYOUTS[FB_N_TABLES] = {FB_LAYOUTS};
static const char *TABLE_NAMES[] = {"Quantization", "Tensor", "Layer", "Preprocessing", "KeyValue",
                                    "Model"};
#define N_OPS (OP_COUNT - 1)

typedef struct {
    const uint8_t *buf;
    uint64_t n;
    long tables;
} verifier;

static const char *tname(int t) { return t < FB_OP_TABLE_0 ? TABLE_NAMES[t] : dfx_op_name(t - FB_OP_TABLE_0 + 1); }

static dfx_status bad(const char *msg, const char *what, uint64_t pos)
{
    return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: %s at byte %llu %s", what,
                    (unsigned long long)pos, msg);
}

static dfx_status need(verifier *v, uint64_t pos, uint64_t size, unsigned align, const char *what)
{
    if (pos > v->n || size > v->n - pos) return bad("lies outside the buffer", what, pos);
    if (align > 1 && pos % align) return bad("is not aligned", what, pos);
    return DFX_OK;
}

static dfx_status deref(verifier *v, uint64_t pos, const char *what, uint64_t *out)
{
    dfx_status st = need(v, pos, 4, 4, what);
    if (st) return st;
    uint32_t off = rd_u32(v->buf + pos);
    if (off == 0) return bad("has a zero offset", what, pos);
    *out = pos + off;
    return DFX_OK;
}

static dfx_status vector(verifier *v, uint64_t pos, unsigned elem, const char *what, uint64_t *start,
                         uint32_t *count)
{
    uint64_t s = 0;
    dfx_status st = deref(v, pos, what, &s);
    if (st) return st;
    if ((st = need(v, s, 4, 4, what))) return st;
    *count = rd_u32(v->buf + s);
    *start = s + 4;
    return need(v, s + 4, (uint64_t)*count * elem, elem < 8 ? elem : 8, what);
}

/* Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF), and no NUL. */
static int utf8_ok(const uint8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n;) {
        uint8_t c = p[i];
        uint32_t len, cp;
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (n - i < len) return 0;
        for (uint32_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += len;
    }
    return 1;
}

static dfx_status string(verifier *v, uint64_t pos, const char *what)
{
    uint64_t s = 0;
    uint32_t n;
    dfx_status st = vector(v, pos, 1, what, &s, &n);
    if (st) return st;
    if ((st = need(v, s + n, 1, 1, what))) return st;
    if (v->buf[s + n] != 0) return bad("is not zero-terminated", what, s);
    if (!utf8_ok(v->buf + s, n)) return bad("is not valid UTF-8 without NUL characters", what, s);
    return DFX_OK;
}

static dfx_status table(verifier *v, uint64_t pos, int t, int depth)
{
    dfx_status st;
    const char *name = tname(t);
    if (depth > MAX_DEPTH) return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: tables nested deeper than %d", MAX_DEPTH);
    if (++v->tables > MAX_TABLES) return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: more than %d tables", MAX_TABLES);
    if ((st = need(v, pos, 4, 4, name))) return st;
    int64_t vt = (int64_t)pos - rd_i32(v->buf + pos);
    if (vt < 0) return bad("has a vtable before the buffer", name, pos);
    if ((st = need(v, (uint64_t)vt, 4, 2, name))) return st;
    unsigned vt_size = rd_u16(v->buf + vt), tbl_size = rd_u16(v->buf + vt + 2);
    if (vt_size < 4 || vt_size % 2) return bad("has a bad vtable size", name, (uint64_t)vt);
    if ((st = need(v, (uint64_t)vt, vt_size, 2, name))) return st;
    if ((st = need(v, pos, tbl_size, 1, name))) return st;
    const layout_t *L = &LAYOUTS[t];
    unsigned slots = (vt_size - 4) / 2;
    unsigned offs[FB_MAX_SLOTS];
    for (int i = 0; i < L->nf; i++) offs[i] = (unsigned)i < slots ? rd_u16(v->buf + vt + 4 + 2 * i) : 0;
    /* required fields */
    for (int i = 0; i < L->nf; i++)
        if ((L->required >> i & 1u) && offs[i] == 0) return bad("lacks a required field", name, pos);
    int union_type = 0;
    for (int i = 0; i < L->nf; i++) {
        unsigned off = offs[i];
        if (!off) continue;
        uint64_t fpos = pos + off;
        int kind = L->kind[i];
        unsigned size = kind == FB_K_S1 || kind == FB_K_UT ? 1 : kind == FB_K_S2 ? 2 : kind == FB_K_S8 ? 8
                        : kind == FB_K_STRUCT24 ? 24 : 4;
        unsigned align = kind == FB_K_STRUCT24 ? 8 : size;
        if (off + size > tbl_size) return bad("has a field running past its table", name, pos);
        if ((st = need(v, fpos, size, align, name))) return st;
        uint64_t s = 0;
        uint32_t n;
        switch (kind) {
        case FB_K_UT: union_type = v->buf[fpos]; break;
        case FB_K_STR: if ((st = string(v, fpos, name))) return st; break;
        case FB_K_V1: if ((st = vector(v, fpos, 1, name, &s, &n))) return st; break;
        case FB_K_V4: if ((st = vector(v, fpos, 4, name, &s, &n))) return st; break;
        case FB_K_T:
            if ((st = deref(v, fpos, name, &s))) return st;
            if ((st = table(v, s, L->sub[i], depth + 1))) return st;
            break;
        case FB_K_VT:
            if ((st = vector(v, fpos, 4, name, &s, &n))) return st;
            for (uint32_t k = 0; k < n; k++) {
                uint64_t e;
                if ((st = deref(v, s + 4ull * k, name, &e))) return st;
                if ((st = table(v, e, L->sub[i], depth + 1))) return st;
            }
            break;
        case FB_K_U:
            if (union_type < 1 || union_type > N_OPS)
                return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: Layer at byte %llu: unknown "
                                "operator type %d (this reader knows 1..%d; the file may need a newer runtime)",
                                (unsigned long long)pos, union_type, N_OPS);
            if ((st = deref(v, fpos, name, &s))) return st;
            if ((st = table(v, s, FB_OP_TABLE_0 + union_type - 1, depth + 1))) return st;
            break;
        default: break;
        }
    }
    if (t == FB_T_LAYER && offs[FB_LAYER_OP] && !offs[FB_LAYER_OP_TYPE])
        return bad("has an operator without a type", name, pos);
    return DFX_OK;
}

dfx_status dfx_fb_verify(const uint8_t *buf, size_t len)
{
    verifier v = {buf, len, 0};
    uint64_t root = 0;
    dfx_status st;
    if (len < 8) return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: shorter than 8 bytes");
    if (memcmp(buf + 4, "DFXG", 4) != 0)
        return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: file identifier is not \"DFXG\"");
    if ((st = deref(&v, 0, "root offset", &root))) return st;
    return table(&v, root, FB_T_MODEL, 0);
}

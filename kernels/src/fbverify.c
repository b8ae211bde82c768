/* Structural verifier of the graph FlatBuffer: a C mirror of
 * sdk/dfxsdk/_fbverify.py (same layout table, same checks, same limits).
 * Every offset, vtable, vector, string and union is proven to lie inside the
 * buffer and to be aligned before the decoder reads anything. */
#include "dfx_internal.h"

enum { K_S1 = 1, K_S2, K_S4, K_S8, K_STR, K_T, K_VT, K_V1, K_V4, K_STRUCT24, K_UT, K_U };
enum { T_QUANT = 0, T_TENSOR, T_LAYER, T_PRE, T_KV, T_MODEL, T_OP0 };

#define MAX_DEPTH 16
#define MAX_TABLES 1000000

typedef struct { int nf; signed char kind[14]; signed char sub[14]; } layout_t;

/* Slot kinds per table; sub = table id for K_T / K_VT. Op tables follow T_OP0
 * in union order (Conv2D = T_OP0 + 0). */
#define S4 K_S4
#define S1 K_S1
#define W8 S4, S4, S4, S4, S4, S4, S4, S4
static const layout_t LAYOUTS[] = {
    /* Quantization */ {5, {S1, S1, S1, K_V1, S4}, {0}},
    /* Tensor */ {5, {K_STR, K_V4, S1, K_T, K_STRUCT24}, {0, 0, 0, T_QUANT, 0}},
    /* Layer */ {7, {K_STR, K_UT, K_U, K_V4, K_V4, K_STR, S1}, {0}},
    /* Preprocessing */ {4, {S4, K_V4, K_V4, S1}, {0}},
    /* KeyValue */ {2, {K_STR, K_STR}, {0}},
    /* Model */ {9, {K_STR, K_STR, K_STR, K_VT, K_VT, K_V4, K_V4, K_VT, K_VT},
                 {0, 0, 0, T_TENSOR, T_LAYER, 0, 0, T_PRE, T_KV}},
    /* Conv2D */ {11, {W8, S4, S4, S4}, {0}},
    /* Deconv2D */ {13, {W8, S4, S4, S4, S4, S4}, {0}},
    /* FullyConnected */ {1, {S4}, {0}},
    /* Pool2D */ {12, {S1, W8, S1, S1, S1}, {0}},
    /* Relu */ {0, {0}, {0}},
    /* Clip */ {2, {S4, S4}, {0}},
    /* PRelu */ {0, {0}, {0}},
    /* Sigmoid */ {0, {0}, {0}},
    /* Tanh */ {0, {0}, {0}},
    /* Lrn */ {5, {S4, S4, S4, S4, S1}, {0}},
    /* Concat */ {1, {S4}, {0}},
    /* Eltwise */ {2, {S1, K_V4}, {0}},
    /* Softmax */ {1, {S4}, {0}},
    /* Scale */ {2, {S4, S4}, {0}},
    /* Power */ {3, {S4, S4, S4}, {0}},
    /* Flatten */ {2, {S4, S4}, {0}},
    /* Reshape */ {0, {0}, {0}},
    /* Permute */ {1, {K_V4}, {0}},
    /* Slice */ {2, {S4, K_V4}, {0}},
    /* Pad */ {2, {K_V4, S4}, {0}},
    /* Upsample */ {2, {S4, S4}, {0}},
    /* Normalize */ {3, {S1, S1, S4}, {0}},
    /* PriorBox */ {11, {K_V4, K_V4, K_V4, S1, S1, K_V4, S4, S4, S4, S4, S4}, {0}},
    /* DetectionOutput */ {11, {S4, S1, S4, S4, S4, S4, S4, S4, S1, S1, S1}, {0}},
    /* Requantize */ {0, {0}, {0}},
    /* Custom */ {3, {K_STR, S4, K_V1}, {0}},
};
static const char *TABLE_NAMES[] = {"Quantization", "Tensor", "Layer", "Preprocessing", "KeyValue",
                                    "Model"};
#define N_OPS 26

typedef struct {
    const uint8_t *buf;
    uint64_t n;
    long tables;
} verifier;

static const char *tname(int t) { return t < T_OP0 ? TABLE_NAMES[t] : dfx_op_name(t - T_OP0 + 1); }

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
    unsigned offs[14];
    for (int i = 0; i < L->nf; i++) offs[i] = (unsigned)i < slots ? rd_u16(v->buf + vt + 4 + 2 * i) : 0;
    /* required fields */
    if ((t == T_TENSOR || t == T_KV || t == T_OP0 + OP_CUSTOM - 1) && offs[0] == 0)
        return bad("lacks a required field (name/key)", name, pos);
    if (t == T_LAYER && (offs[0] == 0 || offs[2] == 0)) return bad("lacks a required field (name/op)", name, pos);
    int union_type = 0;
    for (int i = 0; i < L->nf; i++) {
        unsigned off = offs[i];
        if (!off) continue;
        uint64_t fpos = pos + off;
        int kind = L->kind[i];
        unsigned size = kind == K_S1 || kind == K_UT ? 1 : kind == K_S2 ? 2 : kind == K_S8 ? 8 : kind == K_STRUCT24 ? 24 : 4;
        unsigned align = kind == K_STRUCT24 ? 8 : size;
        if (off + size > tbl_size) return bad("has a field running past its table", name, pos);
        if ((st = need(v, fpos, size, align, name))) return st;
        uint64_t s = 0;
        uint32_t n;
        switch (kind) {
        case K_UT: union_type = v->buf[fpos]; break;
        case K_STR: if ((st = string(v, fpos, name))) return st; break;
        case K_V1: if ((st = vector(v, fpos, 1, name, &s, &n))) return st; break;
        case K_V4: if ((st = vector(v, fpos, 4, name, &s, &n))) return st; break;
        case K_T:
            if ((st = deref(v, fpos, name, &s))) return st;
            if ((st = table(v, s, L->sub[i], depth + 1))) return st;
            break;
        case K_VT:
            if ((st = vector(v, fpos, 4, name, &s, &n))) return st;
            for (uint32_t k = 0; k < n; k++) {
                uint64_t e;
                if ((st = deref(v, s + 4ull * k, name, &e))) return st;
                if ((st = table(v, e, L->sub[i], depth + 1))) return st;
            }
            break;
        case K_U:
            if (union_type < 1 || union_type > N_OPS)
                return dfx_fail(DFX_ERR_FORMAT, "graph FlatBuffer is malformed: Layer at byte %llu: unknown "
                                "operator type %d (this reader knows 1..%d; the file may need a newer runtime)",
                                (unsigned long long)pos, union_type, N_OPS);
            if ((st = deref(v, fpos, name, &s))) return st;
            if ((st = table(v, s, T_OP0 + union_type - 1, depth + 1))) return st;
            break;
        default: break;
        }
    }
    if (t == T_LAYER && offs[2] && !offs[1]) return bad("has an operator without a type", name, pos);
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
    return table(&v, root, T_MODEL, 0);
}

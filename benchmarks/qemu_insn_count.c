/* A TCG plugin for qemu-user that counts the guest instructions executed.
 *
 *   cc -shared -fPIC -O2 -o libinsncount.so qemu_insn_count.c
 *   qemu-aarch64 -plugin ./libinsncount.so -d plugin -D count.txt ./program
 *
 * At exit it writes "insns N" to qemu's plugin log (stderr, or the -D file).
 * With the argument pertb=on (-plugin ./libinsncount.so,pertb=on) it also
 * writes "tb ADDR N" for every guest address where a translated block starts:
 * the instructions executed in blocks starting there (a profile by address,
 * which benchmarks/bench_qemu_insns.py maps to function names).
 * Each translated block gets an inline counter increment of its instruction
 * count (no callback per instruction), so counting costs little. A block left
 * early by a fault would be over-counted; our programs do not fault.
 *
 * The few declarations of QEMU's plugin API (include/qemu/qemu-plugin.h, a
 * stable C ABI) are written out here, because Debian ships qemu-user with
 * plugin support but without that header. */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t; /* not used */
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op, void *ptr,
                                              uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1; /* QEMU_PLUGIN_VERSION of QEMU 6.0 .. 8.1 */

static uint64_t insns; /* one counter: the programs we count are single-threaded */

/* pertb=on: one counter per translated block (a block translated again gets another one), in a list. */
struct tb_count {
    uint64_t vaddr, n;
    struct tb_count *next;
};
static struct tb_count *tbs;
static int pertb;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns, n);
    if (!pertb) return;
    struct tb_count *t = calloc(1, sizeof *t);
    if (!t) return;
    t->vaddr = qemu_plugin_tb_vaddr(tb);
    t->next = tbs;
    tbs = t;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &t->n, n);
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    char line[64];
    (void)id;
    (void)p;
    for (struct tb_count *t = tbs; t; t = t->next)
        if (t->n) {
            snprintf(line, sizeof line, "tb %" PRIx64 " %" PRIu64 "\n", t->vaddr, t->n);
            qemu_plugin_outs(line);
        }
    snprintf(line, sizeof line, "insns %" PRIu64 "\n", insns);
    qemu_plugin_outs(line);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) pertb |= !strcmp(argv[i], "pertb=on");
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}

/* Selection of the kernel set (dispatch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dfx_internal.h"
#include "dispatch.h"

/* Sets compiled into this library, best first. A NEON build adds its sets
 * here (guarded by __ARM_NEON / __ARM_FEATURE_DOTPROD and a run-time check),
 * an x86-64 build its own (arch/x86/x86.h, checked with CPUID). */
#include "arch/x86/x86.h"
#if defined(DFX_HAVE_NEON)
#include "arch/neon/neon.h"
#endif
#if defined(DFX_HAVE_NEON32)
#include "arch/neon32/neon32.h"
#endif

static const struct dfx_kernels *const AVAILABLE[] = {
#if defined(DFX_HAVE_NEON)
    &dfx_kernels_dotprod,
    &dfx_kernels_neon,
#endif
#if defined(DFX_HAVE_NEON32)
    &dfx_kernels_neon32,
#endif
#if DFX_X86_SIMD
    DFX_X86_SETS
#endif
        & dfx_kernels_portable,
};

/* Every set name any build may have (the error messages of dfx_find_kernels list them). */
static const char *const KNOWN[] = {"portable", "neon", "dotprod", "avx2", "avxvnni", "avx512vnni", "avxvnni-emulated"};

/* 1 when this CPU can run the set (the dotprod set needs SDOT, checked with HWCAP; the x86 sets CPUID). */
static int usable(const struct dfx_kernels *k)
{
#if defined(DFX_HAVE_NEON)
    if (k == &dfx_kernels_dotprod) return dfx_neon_has_dotprod();
#endif
#if defined(DFX_HAVE_NEON32)
    if (k == &dfx_kernels_neon32) return dfx_neon32_available();
#endif
#if DFX_X86_SIMD
    if (k != &dfx_kernels_portable) return dfx_x86_usable(k);
#endif
    (void)k;
    return 1;
}

static const struct dfx_kernels *selected;
static char selected_name[96];

const struct dfx_kernels *dfx_select_kernels(void)
{
    if (selected) return selected;
    const struct dfx_kernels *pick = &dfx_kernels_portable;
    for (size_t i = 0; i < sizeof AVAILABLE / sizeof AVAILABLE[0]; i++)
        if (usable(AVAILABLE[i])) {
            pick = AVAILABLE[i];
            break;
        }
    const char *env = getenv("DFX_KERNELS");
    snprintf(selected_name, sizeof selected_name, "%s", pick->name);
    if (env && *env) {
        const struct dfx_kernels *found = NULL;
        for (size_t i = 0; i < sizeof AVAILABLE / sizeof AVAILABLE[0]; i++)
            if (strcmp(AVAILABLE[i]->name, env) == 0 && usable(AVAILABLE[i])) found = AVAILABLE[i];
        if (found) {
            pick = found;
            snprintf(selected_name, sizeof selected_name, "%s", pick->name);
        } else {
            pick = &dfx_kernels_portable;
            snprintf(selected_name, sizeof selected_name, "portable (DFX_KERNELS=%.40s unavailable)", env);
        }
    }
    selected = pick;
    return selected;
}

const char *dfx_kernels_name(void)
{
    dfx_select_kernels();
    return selected_name;
}

const char *dfx_kernels_available(int i)
{
    int k = 0;
    for (size_t j = 0; j < sizeof AVAILABLE / sizeof AVAILABLE[0]; j++)
        if (usable(AVAILABLE[j]) && k++ == i) return AVAILABLE[j]->name;
    return NULL;
}

dfx_status dfx_find_kernels(const char *name, const struct dfx_kernels **out)
{
    if (!name || !*name) {
        *out = dfx_select_kernels();
        return DFX_OK;
    }
    for (size_t j = 0; j < sizeof AVAILABLE / sizeof AVAILABLE[0]; j++) {
        if (strcmp(AVAILABLE[j]->name, name) != 0) continue;
        if (!usable(AVAILABLE[j]))
            return dfx_fail(DFX_ERR_UNSUPPORTED, "kernel set '%s' needs instructions this CPU does not have", name);
        *out = AVAILABLE[j];
        return DFX_OK;
    }
    char list[256] = "";
    for (size_t j = 0; j < sizeof KNOWN / sizeof KNOWN[0]; j++) {
        if (strcmp(KNOWN[j], name) == 0)
            return dfx_fail(DFX_ERR_UNSUPPORTED, "kernel set '%s' is not built into this library", name);
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", j ? ", " : "", KNOWN[j]);
    }
    return dfx_fail(DFX_ERR_ARGUMENT, "unknown kernel set '%.40s' (%s)", name, list);
}

const char *dfx_kernels_known(int i) { return i >= 0 && (size_t)i < sizeof KNOWN / sizeof KNOWN[0] ? KNOWN[i] : NULL; }

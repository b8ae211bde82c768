/* Error messages (per thread when available). */
#include <stdarg.h>
#include <stdio.h>

#include "dfx_internal.h"

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define DFX_TLS _Thread_local
#elif defined(__GNUC__)
#define DFX_TLS __thread
#else
#define DFX_TLS
#endif

static DFX_TLS char last_error[512];

const char *dfx_last_error(void) { return last_error; }

void dfx_clear_error(void) { last_error[0] = 0; }

dfx_status dfx_fail(dfx_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *dfx_status_name(dfx_status st)
{
    static const char *names[] = {"DFX_OK",          "DFX_ERR_IO",      "DFX_ERR_FORMAT",      "DFX_ERR_CHECKSUM",
                                  "DFX_ERR_VERSION", "DFX_ERR_INVALID", "DFX_ERR_UNSUPPORTED", "DFX_ERR_ARGUMENT",
                                  "DFX_ERR_NOMEM",   "DFX_ERR_STATE"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "DFX_ERR_UNKNOWN";
}

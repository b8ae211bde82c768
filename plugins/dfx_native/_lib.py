"""Loading the C library (``libdfx``) with ctypes and declaring its API."""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

_LIB: ctypes.CDLL | None = None


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int), ("shape", ctypes.c_int64 * 8),
                ("dtype", ctypes.c_int), ("quantized", ctypes.c_int), ("bw", ctypes.c_int),
                ("fl", ctypes.c_int), ("rounding", ctypes.c_int), ("per_channel", ctypes.c_int),
                ("is_constant", ctypes.c_int)]


class View(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("count", ctypes.c_int64), ("is_float", ctypes.c_int),
                ("rank", ctypes.c_int), ("shape", ctypes.c_int64 * 8), ("dtype", ctypes.c_int),
                # since 0.2 (dfx.h: fields are appended, the soname changes with them)
                ("bw", ctypes.c_int), ("fl", ctypes.c_int), ("per_channel", ctypes.c_int),
                ("channel_axis", ctypes.c_int), ("channel_fl", ctypes.c_void_p)]


class SessionOptions(ctypes.Structure):
    """dfx_session_options (set ``size`` to ctypes.sizeof(SessionOptions))."""

    _fields_ = [("size", ctypes.c_size_t), ("batch", ctypes.c_int64), ("arena", ctypes.c_void_p),
                ("arena_bytes", ctypes.c_size_t), ("flags", ctypes.c_uint), ("kernels", ctypes.c_char_p),
                ("threads", ctypes.c_int)]


#: numpy type of a view's storage (dfx_dtype: 0 float32, 1 int8, 2 int16, 3 int32)
VIEW_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32"}


def candidates() -> list[str]:
    """Places the shared library is looked for, in order."""
    here = Path(__file__).resolve().parent
    found = []
    env = os.environ.get("DFX_NATIVE_LIB")
    if env:
        found.append(env)
    for pattern in ("_dfxnative*.so", "_dfxnative*.pyd", "_dfxnative*.dylib", "libdfx.so", "libdfx.dylib"):
        found.extend(sorted(glob.glob(str(here / pattern))))
    return found


def _declare(lib: ctypes.CDLL) -> None:
    P, I, I64, U = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_uint
    sig = {
        "dfx_last_error": (ctypes.c_char_p, []),
        "dfx_model_open_file": (I, [ctypes.c_char_p, U, ctypes.POINTER(P)]),
        "dfx_model_open_buffer": (I, [P, ctypes.c_size_t, U, ctypes.POINTER(P)]),
        "dfx_model_close": (None, [P]),
        "dfx_model_verify_data": (I, [P]),
        "dfx_model_num_inputs": (I, [P]),
        "dfx_model_num_outputs": (I, [P]),
        "dfx_model_input": (I, [P, I]),
        "dfx_model_output": (I, [P, I]),
        "dfx_model_find_tensor": (I, [P, ctypes.c_char_p]),
        "dfx_model_tensor_info": (I, [P, I, ctypes.POINTER(TensorInfo)]),
        "dfx_model_arena_size": (I, [P, I64, U, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]),
        "dfx_session_create": (I, [P, I64, P, ctypes.c_size_t, U, ctypes.POINTER(P)]),
        "dfx_session_destroy": (None, [P]),
        "dfx_session_set_input_f32": (I, [P, I, P, I64]),
        "dfx_session_set_input_codes": (I, [P, I, P, I64]),
        "dfx_session_run": (I, [P]),
        "dfx_session_get_tensor": (I, [P, I, ctypes.POINTER(View)]),
        "dfx_session_arena_bytes": (ctypes.c_size_t, [P]),
        "dfx_crc32": (ctypes.c_uint32, [ctypes.c_uint32, P, ctypes.c_size_t]),
        "dfx_kernels_name": (ctypes.c_char_p, []),
        "dfx_kernels_available": (ctypes.c_char_p, [I]),
        "dfx_kernels_known": (ctypes.c_char_p, [I]),
        "dfx_session_create_ex": (I, [P, ctypes.POINTER(SessionOptions), ctypes.POINTER(P)]),
        "dfx_session_kernels_name": (ctypes.c_char_p, [P]),
        "dfx_session_threads": (I, [P]),
        "dfx_session_set_input_u8": (I, [P, I, P, I64, I, I]),
        "dfx_session_get_output": (I, [P, I, ctypes.POINTER(View)]),
        "dfx_view_value": (ctypes.c_double, [ctypes.POINTER(View), I64]),
        "dfx_model_input_layout": (I, [P, I, ctypes.POINTER(I64), ctypes.POINTER(I64), ctypes.POINTER(I64)]),
        "dfx_model_input_preprocessing": (I, [P, I, I64, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float), ctypes.POINTER(I)]),
        "dfx_model_num_metadata": (I, [P]),
        "dfx_model_metadata_at": (I, [P, I, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)]),
        "dfx_model_metadata": (ctypes.c_char_p, [P, ctypes.c_char_p]),
        "dfx_model_num_labels": (I, [P]),
        "dfx_model_label": (ctypes.c_char_p, [P, I]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def load(path: str | None = None) -> ctypes.CDLL:
    """The loaded library (``path``, else the first of :func:`candidates`)."""
    global _LIB
    if path is not None:
        lib = ctypes.CDLL(path)
        _declare(lib)
        return lib
    if _LIB is None:
        errors = []
        for cand in candidates():
            try:
                lib = ctypes.CDLL(cand)
            except OSError as exc:
                errors.append(f"{cand}: {exc}")
                continue
            _declare(lib)
            _LIB = lib
            break
        else:
            raise OSError("the native dfx library is not built: reinstall dfxsdk (pip install builds it) "
                          "or set DFX_NATIVE_LIB to a libdfx shared library"
                          + (f" ({'; '.join(errors)})" if errors else ""))
    return _LIB

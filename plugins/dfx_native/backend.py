"""The native backend: the same contract as the NumPy reference, run by libdfx."""

from __future__ import annotations

import ctypes
import os
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from dfxsdk.errors import DfxFormatError, DfxInputError, DfxUnsupportedError
from dfxsdk.graph import Model
from dfxsdk.providers import Backend, check_inputs

from . import _lib

_STATUS_ERRORS = {2: DfxFormatError, 3: DfxFormatError, 4: DfxFormatError, 5: DfxFormatError,
                  6: DfxUnsupportedError, 7: DfxInputError}
KEEP_ALL = 1
#: Default bound of the session cache (sessions kept open over all models); ``DFX_NATIVE_SESSIONS`` overrides it.
DEFAULT_SESSIONS = 8


def check(lib: ctypes.CDLL, status: int, source: str | None = None) -> None:
    if status:
        msg = lib.dfx_last_error().decode("utf-8", "replace")
        exc = _STATUS_ERRORS.get(status, RuntimeError)
        if exc is RuntimeError:
            raise RuntimeError(f"libdfx error {status}: {msg}")
        raise exc(msg, file=source) if exc is not DfxInputError else exc(msg)


def check_threads(threads: int) -> int:
    """``threads`` if it can be a thread count of libdfx sessions (0 = automatic), else DfxInputError; libdfx
    refuses counts above its limit (``DFX_MAX_SESSION_THREADS``) when the session is created."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise DfxInputError(f"threads must be 0 (automatic: DFX_THREADS, else 1) or a count >= 1, not {threads!r}")
    return threads


class NativeModel:
    """A model opened by libdfx, with sessions cached by (batch, flags, threads, kernels)."""

    def __init__(self, lib: ctypes.CDLL, path: str, source: str | None = None) -> None:
        self.lib = lib
        self.source = source
        handle = ctypes.c_void_p()
        check(lib, lib.dfx_model_open_file(path.encode(), 0, ctypes.byref(handle)), source)
        self.handle = handle
        self.sessions: dict[tuple[int, int, int, str | None], ctypes.c_void_p] = {}

    def tensor(self, name: str) -> int:
        return int(self.lib.dfx_model_find_tensor(self.handle, name.encode()))

    def session(self, batch: int, flags: int, threads: int = 0, kernels: str | None = None) -> ctypes.c_void_p:
        """The open session for ``(batch, flags, threads, kernels)``, created on first use (the caller bounds how
        many stay open); ``threads`` 0 is automatic (``DFX_THREADS``, else 1: dfx.h); ``kernels`` names the
        kernel set (None: the process's, ``dfx_kernels_name()``)."""
        key = (batch, flags, threads, kernels)
        if key not in self.sessions:
            opt = _lib.SessionOptions(size=ctypes.sizeof(_lib.SessionOptions), batch=batch, flags=flags,
                                      threads=check_threads(threads), kernels=kernels.encode() if kernels else None)
            s = ctypes.c_void_p()
            check(self.lib, self.lib.dfx_session_create_ex(self.handle, ctypes.byref(opt), ctypes.byref(s)),
                  self.source)
            self.sessions[key] = s
        return self.sessions[key]

    def release(self, batch: int, flags: int, threads: int = 0, kernels: str | None = None) -> None:
        """Destroy the session for ``(batch, flags, threads, kernels)`` if it is open."""
        s = self.sessions.pop((batch, flags, threads, kernels), None)
        if s is not None:
            self.lib.dfx_session_destroy(s)

    def arena_size(self, batch: int = 1, flags: int = 0) -> tuple[int, int]:
        arena, total = ctypes.c_size_t(), ctypes.c_size_t()
        check(self.lib, self.lib.dfx_model_arena_size(self.handle, batch, flags, ctypes.byref(arena),
                                                      ctypes.byref(total)), self.source)
        return arena.value, total.value

    def close(self) -> None:
        for s in self.sessions.values():
            self.lib.dfx_session_destroy(s)
        self.sessions.clear()
        if self.handle:
            self.lib.dfx_model_close(self.handle)
            self.handle = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def open_model(model: Model) -> NativeModel:
    """Serialise ``model`` (it may have been changed in memory) and open it in libdfx."""
    from dfxsdk.io import save

    lib = _lib.load()
    fd, path = tempfile.mkstemp(suffix=".dfx")
    os.close(fd)
    try:
        save(model, path)
        return NativeModel(lib, path, model.source)
    finally:
        os.unlink(path)   # the mapping stays valid after unlink


class NativeBackend(Backend):
    """libdfx: portable C99 integer kernels, bit-exact to the reference."""

    name = "native"
    description = "C library (kernels/): integer kernels bit-exact to the NumPy reference"
    modes = ("integer",)

    def __init__(self, max_sessions: int | None = None, threads: int = 0, kernels: str | None = None) -> None:
        """``max_sessions``: how many sessions stay open over all models (least recently used first out);
        None takes ``DFX_NATIVE_SESSIONS`` from the environment, else :data:`DEFAULT_SESSIONS`.
        ``threads``: the threads of every session (:attr:`threads`); ``kernels``: their kernel set
        (:attr:`kernels`)."""
        #: Threads of the sessions this backend creates: 1 .. 64, or 0 = automatic (the environment variable
        #: ``DFX_THREADS`` when the session is created, else 1; dfx.h). Results are the same for every count.
        #: Sessions are cached per thread count, so changing it later makes new sessions.
        self.threads = check_threads(threads)
        #: Kernel set of the sessions this backend creates, by name (``dfx_kernels_available``), or None for
        #: the process's (``DFX_KERNELS``, else the best this CPU runs). Every set gives the same results.
        self.kernels = kernels
        if max_sessions is None:
            max_sessions = int(os.environ.get("DFX_NATIVE_SESSIONS", DEFAULT_SESSIONS))
        if max_sessions < 1:
            raise DfxInputError(f"the native backend needs room for at least one session, not {max_sessions}")
        self.max_sessions = max_sessions
        self._models: dict[int, tuple[NativeModel, weakref.finalize]] = {}   # id(model) -> open model
        #: (id(model), batch, flags, threads, kernels) of the open sessions, least recently used first
        self._lru: OrderedDict[tuple[int, int, int, int, str | None], None] = OrderedDict()
        #: How many models were opened and sessions created since the backend was made (to check reuse).
        self.models_opened = 0
        self.sessions_created = 0
        self._custom: set[tuple[str, int]] = set()   # custom operators registered in C

    def unsupported(self, model: Model) -> list[str]:
        return [f"{layer.name} (Custom {layer.op.name})" for layer in model.layers
                if layer.type == "Custom" and (layer.op.name, layer.op.version) not in self._custom]

    def register_custom_op(self, name: str, version: int, function: int, user: int | None = None) -> None:
        """Register the C implementation of custom operator ``name`` at ``version`` with libdfx
        (``dfx_register_custom_op``): ``function`` is the address of a ``dfx_custom_fn`` (for
        example ``ctypes.cast(cdll.my_op, ctypes.c_void_p).value``), ``user`` its user pointer.
        Sessions created afterwards run the operator in C."""
        lib = _lib.load()
        fn = lib.dfx_register_custom_op
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        check(lib, fn(name.encode(), version, function, user))
        self._custom.add((name, version))
        for key in list(self._models):     # sessions made before were planned without it
            self._forget(key)

    def native(self, model: Model) -> NativeModel:
        """``model`` opened in libdfx, kept open (keyed by identity) until it is garbage-collected or its last
        session leaves the cache. A model changed in place after a run must be given as a new object."""
        key = id(model)
        if key not in self._models:
            nm = open_model(model)
            finalizer = weakref.finalize(model, self._forget, key)
            finalizer.atexit = False      # at exit the process's memory goes anyway
            self._models[key] = (nm, finalizer)
            self.models_opened += 1
        return self._models[key][0]

    def session(self, model: Model, batch: int, flags: int) -> tuple[NativeModel, ctypes.c_void_p]:
        """The cached session of ``model`` at ``batch`` with :attr:`threads` and :attr:`kernels` (least recently
        used sessions are closed beyond :attr:`max_sessions`, and a model is closed with its last session)."""
        nm = self.native(model)
        threads = check_threads(self.threads)
        key = (id(model), batch, flags, threads, self.kernels)
        if key in self._lru:
            self._lru.move_to_end(key)
            return nm, nm.sessions[key[1:]]
        s = nm.session(batch, flags, threads, self.kernels)
        self.sessions_created += 1
        self._lru[key] = None
        while len(self._lru) > self.max_sessions:
            old, _ = self._lru.popitem(last=False)
            owner, finalizer = self._models[old[0]]
            owner.release(*old[1:])
            if not owner.sessions and old[0] != id(model):
                finalizer.detach()
                del self._models[old[0]]
                owner.close()
        return nm, s

    def session_threads(self, model: Model, batch: int = 1) -> int:
        """How many threads the session of ``model`` at ``batch`` runs on (``dfx_session_threads``; with
        :attr:`threads` 0 what ``DFX_THREADS`` gave when the session was created)."""
        nm, s = self.session(model, batch, 0)
        return int(nm.lib.dfx_session_threads(s))

    def open_sessions(self) -> int:
        """How many sessions are open now."""
        return len(self._lru)

    def _forget(self, key: int) -> None:
        """Release a garbage-collected model's sessions and close it."""
        entry = self._models.pop(key, None)
        for k in [k for k in self._lru if k[0] == key]:
            del self._lru[k]
        if entry is not None:
            entry[0].close()

    def describe_plan(self, path: str | os.PathLike, batch: int = 1) -> dict:
        """libdfx's plan of the .dfx file ``path`` for a session of ``batch`` samples
        (``dfx_model_describe``): the memory plan, the tensors and every layer's planned kernel,
        input and output actions and prepared constants, as a dict. ``dfxsdk compile`` writes it
        down as C. Refuses, with the library's message, every model the library refuses."""
        import json

        lib = _lib.load()
        fn = lib.dfx_model_describe
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint, ctypes.c_char_p, ctypes.c_size_t,
                       ctypes.POINTER(ctypes.c_size_t)]
        handle = ctypes.c_void_p()
        check(lib, lib.dfx_model_open_file(os.fsencode(path), 1, ctypes.byref(handle)), str(path))
        try:
            n = ctypes.c_size_t()
            check(lib, fn(handle, batch, 0, None, 0, ctypes.byref(n)), str(path))
            buf = ctypes.create_string_buffer(n.value + 1)
            check(lib, fn(handle, batch, 0, buf, n.value + 1, ctypes.byref(n)), str(path))
        finally:
            lib.dfx_model_close(handle)
        return json.loads(buf.raw[:n.value].decode("utf-8", "replace"))

    def run(self, model: Model, inputs: dict[str, np.ndarray], *, mode: str | None = None,
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return self._run(model, inputs, mode=mode, outputs=outputs, codes=False)

    def run_codes(self, model: Model, inputs: dict[str, np.ndarray], *,
                  outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Like :meth:`run`, but integer graph inputs are given as their integer codes."""
        return self._run(model, inputs, mode=None, outputs=outputs, codes=True)

    def _run(self, model: Model, inputs: dict[str, np.ndarray], *, mode: str | None,
             outputs: Sequence[str] | None, codes: bool) -> dict[str, np.ndarray]:
        if mode not in (None, "integer"):
            raise DfxUnsupportedError(f"unknown mode '{mode}' (native backend modes: integer)")
        wanted = list(outputs) if outputs is not None else list(model.outputs)
        for name in wanted:
            if name not in model.tensors:
                raise DfxInputError(f"no tensor named '{name}' in the model", file=model.source)
        batch = check_inputs(model, inputs)
        nm = self.native(model)
        lib = nm.lib
        arrays = []
        for name in model.inputs:
            t = model.tensors[name]
            as_codes = codes and t.qformat is not None
            x = np.ascontiguousarray(inputs[name], dtype=np.int32 if as_codes else np.float32)
            arrays.append((x, as_codes))
        keep = any(n not in model.outputs and not model.tensors[n].is_constant for n in wanted)
        nm, s = self.session(model, batch, KEEP_ALL if keep else 0)
        for i, (x, as_codes) in enumerate(arrays):
            setter = lib.dfx_session_set_input_codes if as_codes else lib.dfx_session_set_input_f32
            check(lib, setter(s, i, x.ctypes.data, x.size), model.source)
        check(lib, lib.dfx_session_run(s), model.source)
        result: dict[str, np.ndarray] = {}
        for name in wanted:
            t = model.tensors[name]
            if t.is_constant:
                data = np.asarray(t.data)
                result[name] = data.astype(np.int32) if t.qformat is not None else data.astype(np.float32)
                continue
            view = _lib.View()
            check(lib, lib.dfx_session_get_tensor(s, nm.tensor(name), ctypes.byref(view)), model.source)
            shape = tuple(view.shape[i] for i in range(view.rank))
            dtype = np.dtype(_lib.VIEW_DTYPES[view.dtype])
            if view.count:
                buf = (ctypes.c_char * (view.count * dtype.itemsize)).from_address(view.data)
                arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
            else:
                arr = np.zeros(shape, dtype)
            result[name] = np.array(arr, dtype=np.float32 if view.is_float else np.int32, copy=True)
        return result


__all__ = ["DEFAULT_SESSIONS", "NativeBackend", "NativeModel", "open_model"]

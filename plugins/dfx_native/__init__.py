"""Native (C) backend for dfxsdk: runs models with the C library of ``kernels/``."""

__version__ = "0.1.0"


def kernels_name() -> str:
    """The kernel set the C library chose for this process, as ``dfx_kernels_name()`` reports it.

    For example ``"avx2"``, ``"neon"``, ``"dotprod"`` or ``"portable"``; ``DFX_KERNELS=NAME`` forces a set, and an
    unavailable one falls back to portable with the reason in parentheses. Loads the library
    (``OSError`` when it is not built).
    """
    from dfx_native import _lib

    return _lib.load().dfx_kernels_name().decode()

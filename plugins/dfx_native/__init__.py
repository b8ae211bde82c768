"""Native (C) backend for dfxsdk: runs models with the C library of ``kernels/``."""

__version__ = "0.1.0"

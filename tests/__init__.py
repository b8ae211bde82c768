"""The pytest suite; one subpackage per part of the code, shared helpers in ``tests.support``."""

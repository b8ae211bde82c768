"""dfx_numpy: the NumPy reference backend of dfxsdk (spec/arithmetic.md, literally)."""

__version__ = "0.1.0"

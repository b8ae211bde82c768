"""dfx_onnx: the ONNX importer plugin of dfxsdk (``pip install dfxsdk[onnx]``).

Float ONNX CNNs (opset 7 and newer) and QDQ models with power-of-two scales.
Use it through ``dfxsdk convert model.onnx -o model.dfx`` (see README.md), or
from Python with :func:`dfx_onnx.plugin.import_onnx`. The ``onnx`` package is
imported only when a model is converted.
"""

__version__ = "0.1.0"

"""Helpers shared by the tests (no test modules here).

``paths``: repository locations; ``testdata``: the shared models of ``../shared/testdata`` and
the one rule for skipping without them; ``cross``: the aarch64 cross toolchain; ``builder``:
hand-built graphs; ``format_models``: models and raw-file helpers for the format tests;
``native``: the C library; ``plugins``: fake distributions, the in-process CLI, the plugin
tutorial; ``quantize``: LeNet, MNIST and MobileNet-SSD for the quantizer; ``onnx_cases``: the
onnx package's backend test cases.
"""

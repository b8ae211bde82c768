"""dfx_caffe: the Caffe, caffe-ssd and Ristretto importer plugin of dfxsdk.

Use it through ``dfxsdk convert`` (see README.md), or from Python with
:func:`dfx_caffe.plugin.import_caffe`.
"""

__version__ = "0.1.0"

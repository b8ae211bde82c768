"""dfx_quantizer: the dynamic fixed point quantizer plugin ("dfp") of dfxsdk.

Calibrates a float model on sample data (:mod:`.stats`), chooses fractional
lengths with pluggable rules (:mod:`.fl_rules`), bit widths with Ristretto's
search or a per-layer search (:mod:`.search`), builds the integer graph
(:mod:`.apply`) and can write a Ristretto prototxt (:mod:`.emit`).
"""

__version__ = "0.1.0"

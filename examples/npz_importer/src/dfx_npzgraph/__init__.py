"""dfx_npzgraph: a dfxsdk importer for npzgraph models (JSON graph + .npz weights).

The format is described in the package README. The plugin's hooks are in
:mod:`dfx_npzgraph.plugin`, the importer in :mod:`dfx_npzgraph.importer`.
"""

__version__ = "1.0.0"

"""CLI stages: one module per stage, named as the stage (``nemo-minitron <stage>``).

A stage module only wires load -> library -> save; the work is done by the library packages
(``models``, ``data``, ``prune``, ``losses``, ``train``, ``evaluate``), which never import
from here.
"""

"""Which SSL method is best? Every method of the six assignments under one protocol.

The comparison itself lives in the library (``replearn.compare``, so that
``assignments/07_which_method_is_best.ipynb`` runs it where only the package is installed); see
its docstring for the protocol. Run: ``python -m benchmarks.quality --preset cpu-quick
[--seeds 0 1 2] [--budget-s 30] [--methods ...]``; writes ``build/bench/quality/quality.json``,
``quality.md`` and the plots.
"""

from replearn.compare import main

if __name__ == "__main__":
    main()

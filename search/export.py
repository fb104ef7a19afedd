"""`python search/export.py EXPERIMENT` (and `search.export`): the entry point of
`search.results.export`, which (re)exports the best config, model and REPORT.md of a search.

Importing `search.export` gives the very module `search.results.export` (one module object).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python search/export.py`: make `search` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search.results.export as _module

if __name__ == "__main__":
    sys.exit(_module.main())
else:
    sys.modules[__name__] = _module

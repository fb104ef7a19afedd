"""`detr_core.pretrain` (and `python -m detr_core.pretrain`): the short path of
`detr_core.training.pretrain`.

Kept for users and scripts that import or run the old name; importing it gives the very module
`detr_core.training.pretrain` (one module object, so patching either name patches both).
"""

import sys

import detr_core.training.pretrain as _module

if __name__ == "__main__":
    sys.exit(_module.main())
else:
    sys.modules[__name__] = _module

"""`python -m detr_core` is `python -m detr_core.train`."""

import sys

from detr_core.train import main

sys.exit(main())

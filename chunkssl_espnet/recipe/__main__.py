"""``python -m chunkssl_espnet.recipe <command>``: see ``chunkssl_espnet.recipe.cli``."""

import sys

from chunkssl_espnet.recipe.cli import main

sys.exit(main())

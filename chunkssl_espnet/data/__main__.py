"""``python -m chunkssl_espnet.data <command> ...``: see ``chunkssl_espnet.data.cli``."""

import sys

from chunkssl_espnet.data.cli import main

sys.exit(main())

"""Entry points: python -m chunkssl_espnet.bin.<name>.

Each ``main()`` loads the plugin through :func:`load_plugin`, which registers our classes in
ESPnet and hides the harmless nltk download errors that importing ESPnet's task modules prints
offline. Importing the plugin as a library (``import chunkssl_espnet.espnet_plugin``) leaves the
process's streams alone.
"""

import contextlib
import io
import sys
from types import ModuleType


def load_plugin() -> ModuleType:
    """Import ``chunkssl_espnet.espnet_plugin`` with its import-time noise hidden (shown again if
    the import fails)."""
    if "chunkssl_espnet.espnet_plugin" in sys.modules:
        return sys.modules["chunkssl_espnet.espnet_plugin"]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            import chunkssl_espnet.espnet_plugin as plugin
    except BaseException:
        sys.stderr.write(buf.getvalue())
        raise
    return plugin

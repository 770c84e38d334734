"""The logic of the ``egs2/*/run.sh`` recipes, behind one thin CLI (``python -m
chunkssl_espnet.recipe``).

Each recipe stage is one call of a sub-command here (see ``cli.py``): data checks and dumping,
feature statistics, ESPnet training, offline and streaming decoding, scoring with the results
table and plots. Every stage is idempotent (a ``.done`` stamp holds a hash of its exact command;
the same command is skipped, a changed one runs again, ESPnet training resumes from its
checkpoint), writes its outputs atomically (temporary path, then rename) and records the command,
the package versions and its resolved options (``run_info.json``) next to its outputs.
"""

"""Data side of the recipes: Kaldi-style data directories, corpus preparation, tokens, scoring.

Modules: ``datadir`` (read/write/validate/fix/split/subset data directories), ``tokens``
(SentencePiece and ESPnet token lists), ``scoring`` (WER, BLEU, average lagging, results
tables), ``librispeech``, ``librilight``, ``must_c`` (corpus preparation) and ``mini_flite``
(the synthetic corpora of the main-job recipes). The command line is ``python -m
chunkssl_espnet.data <command> --help`` (see ``cli``).
"""

"""Benchmarks of the efficiency claims of Chunk SSL (docs/benchmarks.md).

One module per benchmark, each runnable as ``python -m chunkssl_espnet.bench.<name>``:

* ``copy_append``: one copy-and-append pass vs the naive N-1 chunk passes (method section 7).
* ``group_loss``: the group masked prediction loss vs a full softmax over the codebook (section 4).
* ``targets``: FSQ tokenizers vs HuBERT-style k-means for labelling an hour of features (section 3).

Shared helpers: ``common`` (timing, machine description, tables, JSON) and ``memory`` (peak memory).
Benchmarks report figures and ratios measured in one process; they never assert timings.
"""

# Toy sizes for the test suite (./run.sh --toy true): every stage in about a minute on 2 CPU cores,
# on a replica of the corpus layout with a handful of utterances (tests/corpus_replicas.py).
# Options given on the command line still win over these values.
nj=2
ngpu=0
preset=toy              # conf/ssl_chunk_toy.yaml: 2 layers of d 32, 1 epoch
max_segment_s=8
n_valid=1
tokenizer_max_utts=

# Toy sizes for the test suite (./run.sh --toy true): every stage in about two minutes on 2 CPU
# cores, on a replica of the corpus layout with a handful of utterances (tests/corpus_replicas.py).
# Give --pretrained_ssl a toy SSL model (egs2/librilight/ssl1 --toy true) or ''.
# Options given on the command line still win over these values.
nj=2
ngpu=0
preset=toy              # conf/{ssl,asr}_chunk_toy.yaml: 2 layers of d 32, 1 epoch
train_parts=train_clean_100
valid_parts=dev_clean
test_sets=test_clean
bpe_vocab=30
tokenizer_max_utts=
beam_size=2
maxlenratio=0.3
stream_chunk_sizes="8 16"
stream_beam_size=2

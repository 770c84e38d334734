# Toy sizes for the test suite (./run.sh --toy true): the whole recipe in a few minutes on 2 cores.
# Options given on the command line still win over these values.
n_labelled=48
n_pool=64
n_valid=8
n_test=8
vocab_size=150
bpe_vocab=60
ssl_epochs=1
asr_epochs=1
beam_size=2
maxlenratio=0.3
stream_beam_size=2
stream_chunk_sizes="8 16 32"
stream_baseline=false
lm_epochs=1

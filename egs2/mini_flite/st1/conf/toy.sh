# Toy sizes (./run.sh --toy true): the whole recipe in a few minutes on 2 cores.
# Options given on the command line still win over these values.
nj=1                    # one statistics process, not two: a start costs more than the toy data
n_train=48
n_valid=8
n_test=8
tgt_bpe_vocab=80
src_bpe_vocab=60
ssl_epochs=1
st_epochs=1
beam_size=2
maxlenratio=0.3
stream_beam_size=2
stream_maxlenratio=0.3
stream_chunk_sizes="8 16 32"
stream_baseline=false

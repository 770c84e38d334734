# Where the corpora are: edit here, or set the variable in the environment
# (LIBRISPEECH=/data/corpora ./run.sh). LIBRISPEECH holds LibriSpeech/<subset>/ (or is that folder).
LIBRISPEECH=${LIBRISPEECH:-downloads}

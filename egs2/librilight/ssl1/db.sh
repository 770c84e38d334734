# Where the corpora are: edit here, or set the variable in the environment
# (LIBRILIGHT=/data/libri-light ./run.sh). LIBRILIGHT holds the subsets small/, medium/, large/.
LIBRILIGHT=${LIBRILIGHT:-downloads}

# Where the corpora are: edit here, or set the variable in the environment
# (MUST_C=/data/MUST-C ./run.sh). MUST_C holds <src>-<tgt>/data/<split>/ (e.g. en-de/data/train/).
MUST_C=${MUST_C:-downloads}

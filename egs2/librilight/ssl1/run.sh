#!/usr/bin/env bash
# Libri-Light Chunk SSL pre-training (GPU): prepare a subset, cut the long files into segments at
# voice-activity boundaries, hold out a validation set, collect statistics, fit the FSQ tokenizer and
# pre-train the chunked Conformer. The model (exp/ssl/valid.loss.ave.pth) is what
# egs2/librispeech/asr1 and egs2/must_c/st1 fine-tune (their --pretrained_ssl). Stages 1-3 are
# this corpus's; stages 4-6 are the shared ones of ../../TEMPLATE/stages.sh. All logic is in the
# package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=6            # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh); the command line still wins
nj=16                   # CPU jobs (segment cutting, statistics)
ngpu=8                  # GPUs per node (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
cpu_procs=1             # CPU training (ngpu 0): processes of one thread each, DDP over gloo
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/ssl_chunk_<preset>.yaml at the repository root (base, large)
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
subset=small            # Libri-Light subset: small (577 h), medium, large, duplicate
max_segment_s=20        # segments of at most this length, packed from the voice activity
n_valid=1000            # segments held out for validation
tokenizer_kind=random   # FSQ tokenizer: random or trained
tokenizer_levels=2M
tokenizer_max_utts=20000  # segments the tokenizer is fitted on (empty: all)
seed=0
ssl_epochs=             # empty: the config's max_epoch
datadir=data
dumpdir=dump
expdir=exp

help_message="Usage: $0 [options]
Libri-Light (db.sh: LIBRILIGHT) Chunk SSL pre-training.
Stages: 1 data preparation, 2 cut segments into files, 3 validation hold-out, 4 feature statistics,
5 FSQ tokenizer, 6 SSL pre-training."

. ../../TEMPLATE/stages.sh "$@"  # options, path.sh, db.sh, log() and the shared stages
name=librilight_${subset}
setdir=${dumpdir}
train_set=${name}_train
valid_set=${name}_valid

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: prepare Libri-Light ${subset} from ${LIBRILIGHT} (segments <= ${max_segment_s} s)"
    ${python} -m chunkssl_espnet.data librilight "${LIBRILIGHT}" "${datadir}/${name}" \
        --subset ${subset} --max-segment-s ${max_segment_s}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: cut the segments into one file each -> ${dumpdir}/${name}"
    ${python} -m chunkssl_espnet.recipe dump "${datadir}/${name}" --out_root "${dumpdir}" \
        --nj ${nj} --no_text
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: hold out ${n_valid} segments for validation"
    ${python} -m chunkssl_espnet.recipe holdout "${dumpdir}/${name}" "${dumpdir}/${train_set}" \
        "${dumpdir}/${valid_set}" --n ${n_valid} --no_text
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: feature statistics (global MVN) and shapes"
    collect_stats
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    train_tokenizer
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: Chunk SSL pre-training -> ${expdir}/ssl"
    train_ssl
fi

log "Successfully finished stages ${stage}-${stop_stage}. Model: ${expdir}/ssl/valid.loss.ave.pth"

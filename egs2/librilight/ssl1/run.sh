#!/usr/bin/env bash
# Libri-Light Chunk SSL pre-training (GPU): prepare a subset, cut the long files into segments at
# voice-activity boundaries, hold out a validation set, collect statistics, fit the FSQ tokenizer and
# pre-train the chunked Conformer. The model (exp/ssl/valid.loss.ave.pth) is what
# egs2/librispeech/asr1 and egs2/must_c/st1 fine-tune (their --pretrained_ssl).
# All logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1                 # first stage to run
stop_stage=6            # last stage to run
nj=16                   # CPU jobs (segment cutting, statistics)
ngpu=8                  # GPUs per node (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/ssl_chunk_<preset>.yaml at the repository root (base, large)
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
subset=small            # Libri-Light subset: small (577 h), medium, large, duplicate
max_segment_s=20        # segments of at most this length, packed from the voice activity
n_valid=1000            # segments held out for validation
tokenizer_kind=random   # FSQ tokenizer: random or trained
tokenizer_levels=2M
tokenizer_max_utts=20000  # segments the tokenizer is fitted on
ssl_epochs=             # empty: the config's max_epoch
datadir=data
dumpdir=dump
expdir=exp

help_message="Usage: $0 [options]
Libri-Light (db.sh: LIBRILIGHT) Chunk SSL pre-training.
Stages: 1 data preparation, 2 cut segments into files, 3 validation hold-out, 4 feature statistics,
5 FSQ tokenizer, 6 SSL pre-training."

. utils/parse_options.sh
. ./path.sh
. ./db.sh
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
name=librilight_${subset}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 $*" >> "${expdir}/commands.log"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: prepare Libri-Light ${subset} from ${LIBRILIGHT} (segments of <= ${max_segment_s} s)"
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
    ${python} -m chunkssl_espnet.recipe holdout "${dumpdir}/${name}" "${dumpdir}/${name}_train" \
        "${dumpdir}/${name}_valid" --n ${n_valid} --no_text
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: feature statistics (global MVN) and shapes"
    ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
        --train_dir "${dumpdir}/${name}_train" --valid_dir "${dumpdir}/${name}_valid" \
        --out_dir "${expdir}/stats" --nj ${nj}
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind ${tokenizer_kind} \
        --levels ${tokenizer_levels} --data_dir "${dumpdir}/${name}_train" \
        --max_utts ${tokenizer_max_utts} --stats_file "${expdir}/stats/train/feats_stats.npz" \
        --out_dir "${tokenizer_dir}" --device "$([ ${ngpu} -gt 0 ] && echo cuda || echo cpu)"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: Chunk SSL pre-training -> ${expdir}/ssl"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${dumpdir}/${name}_train" --valid_dir "${dumpdir}/${name}_valid" \
        --stats_dir "${expdir}/stats" --tokenizer_dir "${tokenizer_dir}" \
        --output_dir "${expdir}/ssl" ${ssl_epochs:+--max_epoch ${ssl_epochs}} \
        --ngpu ${ngpu} --num_nodes ${num_nodes} --dist_launcher ${dist_launcher}
fi

log "Successfully finished stages ${stage}-${stop_stage}"

#!/usr/bin/env bash
# LibriSpeech ASR (GPU): fine-tune the Chunk SSL encoder (pre-trained on Libri-Light by
# egs2/librilight/ssl1, or here on LibriSpeech) to hybrid CTC/attention ASR with dynamic chunk
# training; decode dev/test clean/other offline and streaming at 160-1280 ms chunks; fill RESULTS.md.
# All logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1                 # first stage to run
stop_stage=11           # last stage to run
nj=16                   # CPU jobs (statistics, offline decoding parts, streaming units)
ngpu=8                  # GPUs per node for training (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/{ssl,asr}_chunk_<preset>.yaml at the repository root (base, large)
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
asr_config=             # default: ${MAIN_ROOT}/conf/asr_chunk_${preset}.yaml
train_set=train_960     # combined from train_parts
train_parts="train_clean_100 train_clean_360 train_other_500"
valid_set=dev           # combined from valid_parts
valid_parts="dev_clean dev_other"
test_sets="dev_clean dev_other test_clean test_other"
bpe_vocab=5000          # SentencePiece unigram units
pretrained_ssl=../../librilight/ssl1/exp/ssl/valid.loss.ave.pth  # empty: pre-train here (5, 6)
tokenizer_kind=random   # FSQ tokenizer of stage 5: random or trained
tokenizer_levels=2M
tokenizer_max_utts=20000  # utterances the tokenizer is fitted on
ssl_epochs=             # empty: the config's max_epoch
asr_epochs=
run_baseline=false      # also train ASR from scratch (stage 8)
inference_ngpu=0        # offline beam search on GPU (1) or CPU (0)
beam_size=10
ctc_weight=0.3
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=10
stream_device=cpu       # latency is measured where the decoder runs
datadir=data
expdir=exp

help_message="Usage: $0 [options]
LibriSpeech: prepare (db.sh: LIBRISPEECH), statistics, BPE, [FSQ tokenizer, Chunk SSL], ASR
fine-tuning [and from-scratch baseline], offline and streaming decoding, RESULTS.md.
Stages: 1 data preparation, 2 combine and check, 3 feature statistics, 4 BPE, 5 tokenizer and
6 SSL (only with --pretrained_ssl ''), 7 ASR from SSL, 8 ASR from scratch (--run_baseline true),
9 offline decoding, 10 streaming decoding, 11 scoring."

. utils/parse_options.sh
. ./path.sh
. ./db.sh
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
asr_config=${asr_config:-${MAIN_ROOT}/conf/asr_chunk_${preset}.yaml}
bpedir=${datadir}/token_list/bpe_unigram${bpe_vocab}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
ssl_model=${pretrained_ssl:-${expdir}/ssl/valid.loss.ave.pth}
models=${expdir}/asr_ssl
[ "${run_baseline}" = true ] && models="${models} ${expdir}/asr_scratch"
test_dirs=
for s in ${test_sets}; do test_dirs="${test_dirs} ${datadir}/${s}"; done
dist_opts="--ngpu ${ngpu} --num_nodes ${num_nodes} --dist_launcher ${dist_launcher}"
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 $*" >> "${expdir}/commands.log"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: prepare LibriSpeech from ${LIBRISPEECH}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data librispeech "${LIBRISPEECH}" "${datadir}" \
        ${train_parts//_/-} ${valid_parts//_/-} ${test_sets//_/-}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: ${train_set} = ${train_parts}; ${valid_set} = ${valid_parts}; check"
    ${python} -m chunkssl_espnet.recipe combine --data_root "${datadir}" \
        "${train_set}=${train_parts// /,}" "${valid_set}=${valid_parts// /,}"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
        --train_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --out_dir "${expdir}/stats" --nj ${nj}
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: SentencePiece unigram, ${bpe_vocab} units -> ${bpedir}"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${datadir}/${train_set}/text" \
        --has-uttids --model-prefix "${bpedir}/bpe" --vocab-size ${bpe_vocab} \
        --model-type unigram --token-list "${bpedir}/tokens.txt"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind ${tokenizer_kind} \
        --levels ${tokenizer_levels} --data_dir "${datadir}/${train_set}" \
        --max_utts ${tokenizer_max_utts} --stats_file "${expdir}/stats/train/feats_stats.npz" \
        --out_dir "${tokenizer_dir}" --device "$([ ${ngpu} -gt 0 ] && echo cuda || echo cpu)"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: Chunk SSL pre-training on ${train_set} -> ${expdir}/ssl"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --stats_dir "${expdir}/stats" --tokenizer_dir "${tokenizer_dir}" \
        --output_dir "${expdir}/ssl" ${ssl_epochs:+--max_epoch ${ssl_epochs}} ${dist_opts}
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: ASR fine-tuning from ${ssl_model} -> ${expdir}/asr_ssl"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task asr --config "${asr_config}" \
        --train_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --stats_dir "${expdir}/stats" --token_list "${bpedir}/tokens.txt" \
        --bpemodel "${bpedir}/bpe.model" --init_param "${ssl_model}:encoder:encoder" \
        --output_dir "${expdir}/asr_ssl" ${asr_epochs:+--max_epoch ${asr_epochs}} ${dist_opts}
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ] && [ "${run_baseline}" = true ]; then
    log "Stage 8: ASR from scratch (baseline) -> ${expdir}/asr_scratch"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task asr --config "${asr_config}" \
        --train_dir "${datadir}/${train_set}" --valid_dir "${datadir}/${valid_set}" \
        --stats_dir "${expdir}/stats" --token_list "${bpedir}/tokens.txt" \
        --bpemodel "${bpedir}/bpe.model" --output_dir "${expdir}/asr_scratch" \
        ${asr_epochs:+--max_epoch ${asr_epochs}} ${dist_opts}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: offline decoding (beam ${beam_size}) of ${models} on ${test_sets}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe decode --task asr --model_dirs ${models} \
        --data_dirs ${test_dirs} --nj ${nj} -- --beam_size ${beam_size} \
        --ctc_weight ${ctc_weight} --ngpu ${inference_ngpu}
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe stream-decode --model_dirs ${models} \
        --data_dirs ${test_dirs} --chunk_sizes ${stream_chunk_sizes} --nj ${nj} -- \
        --beam_size ${stream_beam_size} --ctc_weight ${ctc_weight} --device ${stream_device}
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: scoring -> ${expdir}/RESULTS.md and ${expdir}/plots/"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe score --exp_dir "${expdir}" --data_root "${datadir}" \
        --test_sets ${test_sets} --extra_metrics cer --models "asr_ssl=Chunk SSL + fine-tuning" \
        "asr_scratch=from scratch (baseline)" --ssl "ssl=Chunk SSL" --template RESULTS.md \
        --out "${expdir}/RESULTS.md"
fi

log "Successfully finished stages ${stage}-${stop_stage}"

#!/usr/bin/env bash
# Mini ASR recipe (CPU, about half an hour): Chunk SSL pre-training on a flite-synthesised English
# corpus, fine-tuning to hybrid CTC/attention ASR, a from-scratch baseline, offline and streaming
# decoding at several chunk sizes, scoring, results table and plots. All logic is in the package:
# each stage is one `python -m chunkssl_espnet.recipe ...` (or .data/.bin) call.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1                 # first stage to run
stop_stage=10           # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh); the command line still wins
nj=2                    # parallel jobs (data generation, statistics, decoding)
preset=mini             # model size: conf/{ssl,asr}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ../../../conf/ssl_chunk_${preset}.yaml
asr_config=             # default: ../../../conf/asr_chunk_${preset}.yaml
n_train=500             # utterances of the generated corpus: training
n_valid=50              #   validation
n_test=100              #   test (held-out voice)
voices="slt rms awb kal16"
test_voice=awb
seed=0
bpe_vocab=40            # SentencePiece unigram units (few: faster CTC learning on 30 min)
tokenizer_kind=random   # FSQ tokenizer: random (projection) or trained (autoencoder)
tokenizer_levels=2M     # FSQ levels preset
ssl_epochs=              # empty: the config's max_epoch
asr_epochs=
ngpu=0
side_by_side=true       # stage 7 trains both ASR models at once, one thread each (best on CPU)
beam_size=4             # offline beam search
ctc_weight=0.5          # decoding, as in training (conf/asr_chunk_mini.yaml)
maxlenratio=0.5         # bounds hypothesis length (x encoder frames): undertrained models run away
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=10     # CTC prefix beam of the streaming decoder
stream_baseline=true    # also stream the from-scratch baseline
datadir=data
audio_dir=downloads/audio
expdir=exp

help_message="Usage: $0 [options]
Mini ASR recipe: flite corpus -> statistics -> BPE -> FSQ tokenizer -> Chunk SSL -> ASR fine-tuning
and from-scratch baseline -> offline and streaming decoding -> RESULTS.md and plots in \${expdir}.
Stages: 1 data generation, 2 data check, 3 feature statistics, 4 BPE, 5 tokenizer, 6 SSL,
7 ASR fine-tuning from SSL and from scratch (baseline), 8 offline decoding, 9 streaming decoding,
10 scoring.
Re-run one stage with --stage N --stop_stage N (done stages are skipped unless options changed)."

declare -a run_args=("$@")
. utils/parse_options.sh
if [ "${toy}" = true ]; then
    . conf/toy.sh
    . utils/parse_options.sh "${run_args[@]}"
fi
. ./path.sh
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
asr_config=${asr_config:-${MAIN_ROOT}/conf/asr_chunk_${preset}.yaml}
bpedir=${datadir}/token_list/bpe_unigram${bpe_vocab}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
models="${expdir}/asr_ssl ${expdir}/asr_scratch"
stream_models=${expdir}/asr_ssl
[ "${stream_baseline}" = true ] && stream_models=${models}
asr_opts=
[ "${side_by_side}" = true ] && asr_opts="--concurrent --num_threads 1"
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 ${run_args[*]}" >> "${expdir}/commands.log"
log "$0 ${run_args[*]}"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: generate the corpus with flite (${n_train}/${n_valid}/${n_test} utterances)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data mini-flite "${audio_dir}" "${datadir}" --n-train ${n_train} \
        --n-valid ${n_valid} --n-test ${n_test} --voices ${voices} --test-voice ${test_voice} \
        --seed ${seed} --nj ${nj}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: validate the data directories, write utt2num_samples"
    ${python} -m chunkssl_espnet.recipe check-data "${datadir}/train" "${datadir}/valid" \
        "${datadir}/test"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
        --train_dir "${datadir}/train" --valid_dir "${datadir}/valid" \
        --out_dir "${expdir}/stats" --nj ${nj}
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: SentencePiece unigram, ${bpe_vocab} units -> ${bpedir}"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${datadir}/train/text" --has-uttids \
        --model-prefix "${bpedir}/bpe" --vocab-size ${bpe_vocab} --model-type unigram \
        --token-list "${bpedir}/tokens.txt"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind ${tokenizer_kind} \
        --levels ${tokenizer_levels} --data_dir "${datadir}/train" --seed ${seed} \
        --stats_file "${expdir}/stats/train/feats_stats.npz" --out_dir "${tokenizer_dir}"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: Chunk SSL pre-training -> ${expdir}/ssl"
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${datadir}/train" --valid_dir "${datadir}/valid" \
        --stats_dir "${expdir}/stats" --tokenizer_dir "${tokenizer_dir}" \
        --output_dir "${expdir}/ssl" ${ssl_epochs:+--max_epoch ${ssl_epochs}} --ngpu ${ngpu}
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: ASR fine-tuning from the SSL encoder (${expdir}/asr_ssl) and from scratch" \
        "(${expdir}/asr_scratch)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task asr --config "${asr_config}" \
        --train_dir "${datadir}/train" --valid_dir "${datadir}/valid" \
        --stats_dir "${expdir}/stats" --token_list "${bpedir}/tokens.txt" \
        --bpemodel "${bpedir}/bpe.model" --init_param "${expdir}/ssl/valid.loss.ave.pth:encoder:encoder" \
        --output_dir "${expdir}/asr_ssl" --baseline_output_dir "${expdir}/asr_scratch" \
        ${asr_epochs:+--max_epoch ${asr_epochs}} --ngpu ${ngpu} ${asr_opts}
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: offline decoding (beam ${beam_size}) of ${models}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe decode --task asr --model_dirs ${models} \
        --data_dirs "${datadir}/test" --nj ${nj} -- --beam_size ${beam_size} \
        --ctc_weight ${ctc_weight} --maxlenratio ${maxlenratio}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe stream-decode --model_dirs ${stream_models} \
        --data_dirs "${datadir}/test" --chunk_sizes ${stream_chunk_sizes} --nj ${nj} -- \
        --beam_size ${stream_beam_size} --ctc_weight ${ctc_weight} --device cpu
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: scoring, ${expdir}/RESULTS.md and ${expdir}/plots/"
    ${python} -m chunkssl_espnet.recipe score --exp_dir "${expdir}" --data_root "${datadir}" \
        --test_sets test --extra_metrics cer --models "asr_ssl=Chunk SSL + fine-tuning" \
        "asr_scratch=from scratch (baseline)" --ssl "ssl=Chunk SSL (${tokenizer_kind} FSQ)" \
        --title "mini_flite asr1 (${preset}): ${n_train} training utterances, test voice ${test_voice}"
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

#!/usr/bin/env bash
# Mini ST recipe (CPU): English-German pairs of FreeDict, English spoken by flite; Chunk SSL
# pre-training, ST fine-tuning (attention encoder-decoder with an auxiliary source CTC), a
# from-scratch baseline, offline and streaming (local agreement) decoding, BLEU and average lagging.
# All logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1                 # first stage to run
stop_stage=11           # last stage to run
toy=false               # tiny sizes (conf/toy.sh); the command line still wins
nj=2                    # parallel jobs (data generation, statistics, decoding)
preset=mini             # model size: conf/{ssl,st}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
st_config=              # default: ${MAIN_ROOT}/conf/st_chunk_${preset}.yaml
n_train=600             # utterances of the generated corpus: training
n_valid=60              #   validation
n_test=100              #   test (held-out voice)
voices="slt rms awb kal16"
test_voice=awb
seed=0
tgt_bpe_vocab=200       # SentencePiece unigram units, German (true case)
src_bpe_vocab=150       # English (lower case, no punctuation) for the auxiliary CTC
tokenizer_kind=random   # FSQ tokenizer: random (projection) or trained (autoencoder)
tokenizer_levels=2M
ssl_epochs=             # empty: the config's max_epoch
st_epochs=
ngpu=0
side_by_side=true       # stage 8 trains both ST models at once, one thread each (best on CPU)
beam_size=4             # offline beam search
maxlenratio=0.5         # bounds hypothesis length (x encoder frames)
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=4      # beam of each re-decoding (local agreement)
stream_baseline=true    # also stream the from-scratch baseline
datadir=data
audio_dir=downloads/audio
expdir=exp

help_message="Usage: $0 [options]
Mini ST recipe (en-de): flite corpus -> statistics -> BPE (de, en) -> FSQ tokenizer -> Chunk SSL ->
ST fine-tuning and from-scratch baseline -> offline and streaming decoding -> RESULTS.md and plots.
Stages: 1 data generation, 2 data check, 3 feature statistics, 4 target BPE, 5 source BPE,
6 tokenizer, 7 SSL, 8 ST fine-tuning from SSL and from scratch (baseline), 9 offline decoding,
10 streaming decoding, 11 scoring (BLEU, average lagging)."

declare -a run_args=("$@")
. utils/parse_options.sh
if [ "${toy}" = true ]; then
    . conf/toy.sh
    . utils/parse_options.sh "${run_args[@]}"
fi
. ./path.sh
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
st_config=${st_config:-${MAIN_ROOT}/conf/st_chunk_${preset}.yaml}
tgt_bpedir=${datadir}/token_list/tgt_bpe_unigram${tgt_bpe_vocab}
src_bpedir=${datadir}/token_list/src_bpe_unigram${src_bpe_vocab}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
models="${expdir}/st_ssl ${expdir}/st_scratch"
stream_models=${expdir}/st_ssl
[ "${stream_baseline}" = true ] && stream_models=${models}
st_opts=
[ "${side_by_side}" = true ] && st_opts="--concurrent --num_threads 1"
st_data="--train_dir ${datadir}/train --valid_dir ${datadir}/valid --stats_dir ${expdir}/stats
    --token_list ${tgt_bpedir}/tokens.txt --bpemodel ${tgt_bpedir}/bpe.model
    --text_name text.tc.de --src_token_list ${src_bpedir}/tokens.txt
    --src_bpemodel ${src_bpedir}/bpe.model --src_text_name text.lc.rm.en"
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 ${run_args[*]}" >> "${expdir}/commands.log"
log "$0 ${run_args[*]}"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: generate the corpus with flite (${n_train}/${n_valid}/${n_test} utterances)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data mini-st "${audio_dir}" "${datadir}" --n-train ${n_train} \
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
    log "Stage 4: target SentencePiece (de, ${tgt_bpe_vocab} units)"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${tgt_bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${datadir}/train/text.tc.de" \
        --has-uttids --model-prefix "${tgt_bpedir}/bpe" --vocab-size ${tgt_bpe_vocab} \
        --model-type unigram --token-list "${tgt_bpedir}/tokens.txt"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: source SentencePiece (en, ${src_bpe_vocab} units)"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${src_bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${datadir}/train/text.lc.rm.en" \
        --has-uttids --model-prefix "${src_bpedir}/bpe" --vocab-size ${src_bpe_vocab} \
        --model-type unigram --token-list "${src_bpedir}/tokens.txt"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind ${tokenizer_kind} \
        --levels ${tokenizer_levels} --data_dir "${datadir}/train" --seed ${seed} \
        --stats_file "${expdir}/stats/train/feats_stats.npz" --out_dir "${tokenizer_dir}"
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: Chunk SSL pre-training -> ${expdir}/ssl"
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${datadir}/train" --valid_dir "${datadir}/valid" \
        --stats_dir "${expdir}/stats" --tokenizer_dir "${tokenizer_dir}" \
        --output_dir "${expdir}/ssl" ${ssl_epochs:+--max_epoch ${ssl_epochs}} --ngpu ${ngpu}
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: ST fine-tuning from the SSL encoder (${expdir}/st_ssl) and from scratch" \
        "(${expdir}/st_scratch)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task st --config "${st_config}" ${st_data} \
        --init_param "${expdir}/ssl/valid.loss.ave.pth:encoder:encoder" \
        --output_dir "${expdir}/st_ssl" --baseline_output_dir "${expdir}/st_scratch" \
        ${st_epochs:+--max_epoch ${st_epochs}} --ngpu ${ngpu} ${st_opts}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: offline decoding (beam ${beam_size}) of ${models}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe decode --task st --model_dirs ${models} \
        --data_dirs "${datadir}/test" --nj ${nj} -- --beam_size ${beam_size} \
        --maxlenratio ${maxlenratio}
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe stream-decode --task st --model_dirs ${stream_models} \
        --data_dirs "${datadir}/test" --chunk_sizes ${stream_chunk_sizes} --nj ${nj} \
        --ref_name text.tc.de -- --beam_size ${stream_beam_size} --maxlenratio ${maxlenratio}
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: BLEU, ${expdir}/RESULTS.md and ${expdir}/plots/"
    ${python} -m chunkssl_espnet.recipe score --exp_dir "${expdir}" --data_root "${datadir}" \
        --test_sets test --metric bleu --text_name text.tc.de \
        --models "st_ssl=Chunk SSL + ST" "st_scratch=from scratch (baseline)" \
        --ssl "ssl=Chunk SSL (${tokenizer_kind} FSQ)" \
        --title "mini_flite st1 (${preset}, en-de): ${n_train} training utterances"
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

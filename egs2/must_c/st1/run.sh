#!/usr/bin/env bash
# MuST-C speech translation (GPU): prepare a language pair, cut the talks into segments, BPE for
# target and source, fine-tune the Chunk SSL encoder (pre-trained on Libri-Light by
# egs2/librilight/ssl1, or here) to an attention encoder-decoder with an auxiliary source CTC,
# decode offline and streaming at 160-1280 ms chunks, score BLEU (sacreBLEU) and average lagging.
# All logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

stage=1                 # first stage to run
stop_stage=11           # last stage to run
nj=16                   # CPU jobs (segment cutting, statistics, decoding)
ngpu=4                  # GPUs per node for training (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/{ssl,st}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
st_config=              # default: ${MAIN_ROOT}/conf/st_chunk_${preset}.yaml
src_lang=en
tgt_lang=de
train_split=train
valid_split=dev
test_splits="tst-COMMON tst-HE"
tgt_bpe_vocab=4000      # SentencePiece unigram units, target (true case)
src_bpe_vocab=4000      # source (lower case, no punctuation) for the auxiliary CTC
pretrained_ssl=../../librilight/ssl1/exp/ssl/valid.loss.ave.pth  # empty: pre-train here (6, 7)
tokenizer_kind=random
tokenizer_levels=2M
tokenizer_max_utts=20000
ssl_epochs=             # empty: the config's max_epoch
st_epochs=
inference_ngpu=0
beam_size=10            # offline beam search
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=4      # beam of each re-decoding (local agreement)
stream_device=cpu
datadir=data
dumpdir=dump
expdir=exp

help_message="Usage: $0 [options]
MuST-C (db.sh: MUST_C) speech translation ${src_lang}-${tgt_lang} on a Chunk SSL encoder.
Stages: 1 data preparation, 2 cut segments into files, 3 feature statistics, 4 target BPE,
5 source BPE, 6 tokenizer and 7 SSL (only with --pretrained_ssl ''), 8 ST training,
9 offline decoding, 10 streaming decoding (local agreement), 11 BLEU, lagging, RESULTS.md."

. utils/parse_options.sh
. ./path.sh
. ./db.sh
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
st_config=${st_config:-${MAIN_ROOT}/conf/st_chunk_${preset}.yaml}
pair=${src_lang}-${tgt_lang}
tgt_bpedir=${datadir}/token_list/tgt_bpe_unigram${tgt_bpe_vocab}
src_bpedir=${datadir}/token_list/src_bpe_unigram${src_bpe_vocab}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
ssl_model=${pretrained_ssl:-${expdir}/ssl/valid.loss.ave.pth}
splits="${train_split} ${valid_split} ${test_splits}"
data_splits= test_dirs= test_sets=
for s in ${splits}; do data_splits="${data_splits} ${datadir}/${s}.${pair}"; done
for s in ${test_splits}; do
    test_dirs="${test_dirs} ${dumpdir}/${s}.${pair}"
    test_sets="${test_sets} ${s}.${pair}"
done
train_dir=${dumpdir}/${train_split}.${pair}
valid_dir=${dumpdir}/${valid_split}.${pair}
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 $*" >> "${expdir}/commands.log"

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: prepare MuST-C ${pair} (${splits}) from ${MUST_C}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data must-c "${MUST_C}" "${datadir}" --lang-pair ${pair} \
        --splits ${splits}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: cut the talks into one file per segment -> ${dumpdir}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe dump ${data_splits} --out_root "${dumpdir}" --nj ${nj}
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" --train_dir "${train_dir}" \
        --valid_dir "${valid_dir}" --out_dir "${expdir}/stats" --nj ${nj}
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: target SentencePiece (${tgt_lang}, ${tgt_bpe_vocab} units)"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${tgt_bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${train_dir}/text.tc.${tgt_lang}" \
        --has-uttids --model-prefix "${tgt_bpedir}/bpe" --vocab-size ${tgt_bpe_vocab} \
        --model-type unigram --token-list "${tgt_bpedir}/tokens.txt"
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: source SentencePiece (${src_lang}, ${src_bpe_vocab} units)"
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${src_bpedir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${train_dir}/text.lc.rm.${src_lang}" \
        --has-uttids --model-prefix "${src_bpedir}/bpe" --vocab-size ${src_bpe_vocab} \
        --model-type unigram --token-list "${src_bpedir}/tokens.txt"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind ${tokenizer_kind} \
        --levels ${tokenizer_levels} --data_dir "${train_dir}" --max_utts ${tokenizer_max_utts} \
        --stats_file "${expdir}/stats/train/feats_stats.npz" --out_dir "${tokenizer_dir}"
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 7: Chunk SSL pre-training on ${train_dir} -> ${expdir}/ssl"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${train_dir}" --valid_dir "${valid_dir}" --stats_dir "${expdir}/stats" \
        --tokenizer_dir "${tokenizer_dir}" --output_dir "${expdir}/ssl" \
        ${ssl_epochs:+--max_epoch ${ssl_epochs}} --ngpu ${ngpu} --num_nodes ${num_nodes} \
        --dist_launcher ${dist_launcher}
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: ST training from ${ssl_model} -> ${expdir}/st_ssl"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe train --task st --config "${st_config}" \
        --train_dir "${train_dir}" --valid_dir "${valid_dir}" --stats_dir "${expdir}/stats" \
        --token_list "${tgt_bpedir}/tokens.txt" --bpemodel "${tgt_bpedir}/bpe.model" \
        --text_name "text.tc.${tgt_lang}" --src_token_list "${src_bpedir}/tokens.txt" \
        --src_bpemodel "${src_bpedir}/bpe.model" --src_text_name "text.lc.rm.${src_lang}" \
        --init_param "${ssl_model}:encoder:encoder" --output_dir "${expdir}/st_ssl" \
        ${st_epochs:+--max_epoch ${st_epochs}} --ngpu ${ngpu} --num_nodes ${num_nodes} \
        --dist_launcher ${dist_launcher}
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: offline decoding (beam ${beam_size}) of ${test_splits}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe decode --task st --model_dirs "${expdir}/st_ssl" \
        --data_dirs ${test_dirs} --nj ${nj} -- --beam_size ${beam_size} --ngpu ${inference_ngpu}
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe stream-decode --task st --model_dirs "${expdir}/st_ssl" \
        --data_dirs ${test_dirs} --chunk_sizes ${stream_chunk_sizes} --nj ${nj} \
        --ref_name "text.tc.${tgt_lang}" -- --beam_size ${stream_beam_size} \
        --device ${stream_device}
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: BLEU -> ${expdir}/RESULTS.md"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe score --exp_dir "${expdir}" --data_root "${dumpdir}" \
        --test_sets ${test_sets} --models "st_ssl=Chunk SSL + ST" --ssl "ssl=Chunk SSL" \
        --metric bleu --text_name "text.tc.${tgt_lang}" --template RESULTS.md \
        --out "${expdir}/RESULTS.md"
fi

log "Successfully finished stages ${stage}-${stop_stage}"

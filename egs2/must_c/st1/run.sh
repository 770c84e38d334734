#!/usr/bin/env bash
# MuST-C speech translation (GPU): prepare a language pair, cut the talks into segments, BPE for
# target and source, fine-tune the Chunk SSL encoder (pre-trained on Libri-Light by
# egs2/librilight/ssl1, or here) to an attention encoder-decoder with an auxiliary source CTC,
# decode offline and streaming at 160-1280 ms chunks, score BLEU (sacreBLEU) and average lagging.
# Stages 1-2 are this corpus's; stages 3-11 are the shared ones of ../../TEMPLATE/stages.sh. All
# logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=11           # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh); the command line still wins
nj=16                   # CPU jobs (segment cutting, statistics, decoding)
ngpu=4                  # GPUs per node for training (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
cpu_procs=1             # CPU training (ngpu 0): processes of one thread each, DDP over gloo
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/{ssl,st}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
st_config=              # default: ${MAIN_ROOT}/conf/st_chunk_${preset}.yaml
src_lang=en
tgt_lang=de
train_split=train       # MuST-C splits: data sets <split>.<src_lang>-<tgt_lang> in dumpdir
valid_split=dev
test_splits="tst-COMMON tst-HE"
tgt_bpe_vocab=4000      # SentencePiece unigram units, target (true case)
src_bpe_vocab=4000      # source (lower case, no punctuation) for the auxiliary CTC
pretrained_ssl=../../librilight/ssl1/exp/ssl/valid.loss.ave.pth  # empty: pre-train here (6, 7)
tokenizer_kind=random
tokenizer_levels=2M
tokenizer_max_utts=20000  # segments the tokenizer is fitted on (empty: all)
seed=0
ssl_epochs=             # empty: the config's max_epoch
st_epochs=
run_baseline=false      # also train ST from scratch (stage 8)
side_by_side=false      # train both at once (CPU); otherwise one after the other
beam_size=10            # offline beam search
maxlenratio=0.0         # 0: ESPnet's bound (the encoder length)
inference_ngpu=0        # offline beam search on GPU (1) or CPU (0)
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=4      # beam of each re-decoding (local agreement)
stream_maxlenratio=0.5  # output length bound (x encoder frames) of each re-decoding
stream_baseline=true    # also stream the from-scratch baseline (with --run_baseline true)
stream_device=cpu       # latency is measured where the decoder runs
datadir=data
dumpdir=dump
expdir=exp

help_message="Usage: $0 [options]
MuST-C (db.sh: MUST_C) speech translation ${src_lang}-${tgt_lang} on a Chunk SSL encoder.
Stages: 1 data preparation, 2 cut segments into files, 3 feature statistics, 4 target BPE,
5 source BPE, 6 tokenizer and 7 SSL (only with --pretrained_ssl ''), 8 ST training [and from
scratch: --run_baseline true], 9 offline decoding, 10 streaming decoding (local agreement),
11 BLEU, lagging, RESULTS.md."

. ../../TEMPLATE/stages.sh "$@"  # options, path.sh, db.sh, log() and the shared stages
pair=${src_lang}-${tgt_lang}
setdir=${dumpdir}
train_set=${train_split}.${pair}
valid_set=${valid_split}.${pair}
test_sets=
for s in ${test_splits}; do test_sets="${test_sets} ${s}.${pair}"; done
test_sets=${test_sets# }
tgt_text=text.tc.${tgt_lang}
src_text=text.lc.rm.${src_lang}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: prepare MuST-C ${pair} ${train_split} ${valid_split} ${test_splits} from ${MUST_C}"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data must-c "${MUST_C}" "${datadir}" --lang-pair ${pair} \
        --splits ${train_split} ${valid_split} ${test_splits}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: cut the talks into one file per segment -> ${dumpdir}"
    srcs=()
    for s in ${train_set} ${valid_set} ${test_sets}; do srcs+=("${datadir}/${s}"); done
    ${python} -m chunkssl_espnet.recipe dump "${srcs[@]}" --out_root "${dumpdir}" --nj ${nj}
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    collect_stats
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: target SentencePiece (${tgt_lang}, ${tgt_bpe_vocab} units)"
    train_bpe tgt
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: source SentencePiece (${src_lang}, ${src_bpe_vocab} units)"
    train_bpe src
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    train_tokenizer
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 7: Chunk SSL pre-training on ${train_set} -> ${expdir}/ssl"
    train_ssl
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: ST training from $(ssl_model) -> $(models st)"
    train_downstream st
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: offline decoding (beam ${beam_size}) of ${test_sets}"
    decode_offline st
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    decode_streaming st
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: BLEU -> ${expdir}/RESULTS.md"
    score_results st "MuST-C ${pair} ST" RESULTS.md
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

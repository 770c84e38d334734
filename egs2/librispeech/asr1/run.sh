#!/usr/bin/env bash
# LibriSpeech ASR (GPU): fine-tune the Chunk SSL encoder (pre-trained on Libri-Light by
# egs2/librilight/ssl1, or here on LibriSpeech) to hybrid CTC/attention ASR with dynamic chunk
# training; decode dev/test clean/other offline and streaming at 160-1280 ms chunks; fill RESULTS.md.
# Stages 1-2 are this corpus's; stages 3-10 are the shared ones of ../../TEMPLATE/stages.sh. All
# logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=10           # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh); the command line still wins
nj=16                   # CPU jobs (statistics, offline decoding parts, streaming units)
ngpu=8                  # GPUs per node for training (ESPnet spawns one process per GPU)
num_nodes=1             # >1: run this script on every node under srun (see --dist_launcher)
cpu_procs=1             # CPU training (ngpu 0): processes of one thread each, DDP over gloo
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=base             # conf/{ssl,asr}_chunk_<preset>.yaml at the repository root (base, large)
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
asr_config=             # default: ${MAIN_ROOT}/conf/asr_chunk_${preset}.yaml
train_parts="train_clean_100 train_clean_360 train_other_500"  # LibriSpeech subsets of train_set
valid_parts="dev_clean dev_other"                              #   and of valid_set
ssl_train_set=          # data set of SSL pre-training with --pretrained_ssl '' (empty: train_set)
train_set=train_960     # data set of ASR fine-tuning, combined from train_parts
valid_set=dev           # combined from valid_parts
test_sets="dev_clean dev_other test_clean test_other"  # LibriSpeech subsets
bpe_vocab=5000          # SentencePiece unigram units
pretrained_ssl=../../librilight/ssl1/exp/ssl/valid.loss.ave.pth  # empty: pre-train here (5, 6)
tokenizer_kind=random   # FSQ tokenizer of stage 5: random or trained
tokenizer_levels=2M
tokenizer_max_utts=20000  # utterances the tokenizer is fitted on (empty: all)
seed=0
ssl_epochs=             # empty: the config's max_epoch
asr_epochs=
run_baseline=false      # also train ASR from scratch (stage 7)
side_by_side=false      # train both at once (CPU); otherwise one after the other
beam_size=10            # offline beam search
ctc_weight=0.3
maxlenratio=0.0         # 0: ESPnet's bound (the encoder length)
inference_ngpu=0        # offline beam search on GPU (1) or CPU (0)
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=10     # CTC prefix beam of the streaming decoder
stream_baseline=true    # also stream the from-scratch baseline (with --run_baseline true)
stream_device=cpu       # latency is measured where the decoder runs
datadir=data
expdir=exp

help_message="Usage: $0 [options]
LibriSpeech: prepare (db.sh: LIBRISPEECH), statistics, BPE, [FSQ tokenizer, Chunk SSL], ASR
fine-tuning [and from-scratch baseline], offline and streaming decoding, RESULTS.md.
Stages: 1 data preparation, 2 combine and check, 3 feature statistics, 4 BPE, 5 tokenizer and
6 SSL (only with --pretrained_ssl ''), 7 ASR from SSL [and from scratch: --run_baseline true],
8 offline decoding, 9 streaming decoding, 10 scoring."

. ../../TEMPLATE/stages.sh "$@"  # options, path.sh, db.sh, log() and the shared stages
setdir=${datadir}

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
    collect_stats
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: SentencePiece unigram, ${bpe_vocab} units -> $(bpe_dir asr)"
    train_bpe asr
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    train_tokenizer
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: Chunk SSL pre-training on $(ssl_set) -> ${expdir}/ssl"
    train_ssl
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: ASR fine-tuning from $(ssl_model) -> $(models asr)"
    train_downstream asr
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: offline decoding (beam ${beam_size}) of $(models asr) on ${test_sets}"
    decode_offline asr
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    decode_streaming asr
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: scoring -> ${expdir}/RESULTS.md and ${expdir}/plots/"
    score_results asr "LibriSpeech ASR" RESULTS.md
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

#!/usr/bin/env bash
# Mini ST recipe (CPU): English-German pairs of FreeDict, English spoken by flite; Chunk SSL
# pre-training, ST fine-tuning (attention encoder-decoder with an auxiliary source CTC), a
# from-scratch baseline, offline and streaming (local agreement) decoding, BLEU and average lagging.
# Stages 1-2 are this corpus's; stages 3-11 are the shared ones of ../../TEMPLATE/stages.sh. All
# logic is in the package: each stage is one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=11           # last stage to run
toy=false               # tiny sizes (conf/toy.sh); the command line still wins
nj=2                    # parallel jobs (data generation, statistics, decoding)
ngpu=0                  # GPUs for training
num_nodes=1             # >1: run this script on every node (see --dist_launcher)
cpu_procs=2             # CPU training alone on the machine (SSL): 2 processes of one thread
                        # each, DDP over gloo (0.70 s a step; one process of 2 threads: 0.74)
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=mini             # model size: conf/{ssl,st}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml
st_config=              # default: ${MAIN_ROOT}/conf/st_chunk_${preset}.yaml
n_train=600             # utterances of the generated corpus: training
n_valid=60              #   validation
n_test=100              #   test (held-out voice)
voices="slt rms awb kal16"
test_voice=awb
seed=0
ssl_train_set=          # data set of SSL pre-training (empty: train_set)
train_set=train         # data set of ST fine-tuning
valid_set=valid
test_sets=test
tgt_bpe_vocab=200       # SentencePiece unigram units, German (true case)
src_bpe_vocab=150       # English (lower case, no punctuation) for the auxiliary CTC
pretrained_ssl=         # an SSL model to fine-tune (empty: pre-train here, stages 6 and 7)
tokenizer_kind=random   # FSQ tokenizer: random (projection) or trained (autoencoder)
tokenizer_levels=2M
tokenizer_max_utts=     # utterances the tokenizer is fitted on (empty: all)
ssl_epochs=8            # SSL on the ST training audio (empty: the config's max_epoch, 3)
st_epochs=
run_baseline=true       # also train ST from scratch (stage 8)
side_by_side=true       # stage 8 trains both ST models at once, one thread each (best on CPU)
beam_size=4             # offline beam search
maxlenratio=0.5         # bounds hypothesis length (x encoder frames)
inference_ngpu=0        # offline beam search on GPU (1) or CPU (0)
stream_chunk_sizes="4 8 16 32"  # streaming chunk sizes in 40 ms encoder frames (160-1280 ms)
stream_beam_size=4      # beam of each re-decoding (local agreement)
stream_maxlenratio=0.5  # the same bound in each re-decoding
stream_baseline=true    # also stream the from-scratch baseline
stream_device=cpu       # latency is measured where the decoder runs
datadir=data
audio_dir=downloads/audio
expdir=exp

help_message="Usage: $0 [options]
Mini ST recipe (en-de): flite corpus -> statistics -> BPE (de, en) -> FSQ tokenizer -> Chunk SSL ->
ST fine-tuning and from-scratch baseline -> offline and streaming decoding -> RESULTS.md and plots.
Stages: 1 data generation, 2 data check, 3 feature statistics, 4 target BPE, 5 source BPE,
6 tokenizer and 7 SSL (only with --pretrained_ssl ''), 8 ST fine-tuning from SSL and from scratch
(baseline), 9 offline decoding, 10 streaming decoding, 11 scoring (BLEU, average lagging)."

. ../../TEMPLATE/stages.sh "$@"  # options, path.sh, log() and the shared stages
setdir=${datadir}
tgt_text=text.tc.de
src_text=text.lc.rm.en

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: generate the corpus with flite (${n_train}/${n_valid}/${n_test} utterances)"
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data mini-st "${audio_dir}" "${datadir}" --n-train ${n_train} \
        --n-valid ${n_valid} --n-test ${n_test} --voices ${voices} --test-voice ${test_voice} \
        --seed ${seed} --nj ${nj}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: validate the data directories, write utt2num_samples"
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe check-data "${datadir}/${train_set}" \
        "${datadir}/${valid_set}" $(test_dirs)
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    collect_stats
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: target SentencePiece (de, ${tgt_bpe_vocab} units)"
    train_bpe tgt
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Stage 5: source SentencePiece (en, ${src_bpe_vocab} units)"
    train_bpe src
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    train_tokenizer
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 7: Chunk SSL pre-training -> ${expdir}/ssl"
    train_ssl
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: ST fine-tuning from the SSL encoder (${expdir}/st_ssl) and from scratch" \
        "(${expdir}/st_scratch)"
    train_downstream st
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: offline decoding (beam ${beam_size}) of $(models st)"
    decode_offline st
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    decode_streaming st
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: BLEU, ${expdir}/RESULTS.md and ${expdir}/plots/"
    score_results st "mini_flite st1 (${preset}, en-de): ${n_train} training utterances"
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

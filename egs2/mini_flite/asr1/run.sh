#!/usr/bin/env bash
# Mini ASR recipe (CPU, about half an hour): does Chunk SSL pre-training help where labels are
# scarce? A synthesised English corpus with a closed vocabulary (chunkssl_espnet/data/mini_asr.py):
# 600 labelled utterances (0.36 h) and an unlabelled pool of 3000 (1.8 h: the labelled ones and more
# renditions by perturbed training voices); Chunk SSL pre-training on the pool, fine-tuning to
# hybrid CTC/attention ASR on the labelled set and its speed-perturbed copies, the same model from
# scratch as the baseline, a token LM on the corpus's text-only sentences, offline and streaming
# decoding (LM fused) of a seen-voice and an unseen-voice test set (300 utterances each), scoring
# with the relative gain and its bootstrap interval, plots. Stages 1-2 are this corpus's; stages
# 3-10 are the shared ones of ../../TEMPLATE/stages.sh. All logic is in the package: each stage is
# one `python -m chunkssl_espnet.<module>` call.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=10           # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh); the command line still wins
nj=2                    # parallel jobs (data generation, statistics, decoding)
ngpu=0                  # GPUs for training
num_nodes=1             # >1: run this script on every node (see --dist_launcher)
cpu_procs=2             # CPU training alone on the machine (SSL): 2 processes of one thread
                        # each, DDP over gloo (0.70 s a step; one process of 2 threads: 0.74)
dist_launcher=slurm     # slurm or mpi, for num_nodes > 1
preset=mini             # model size: conf/{ssl,asr}_chunk_<preset>.yaml at the repository root
ssl_config=             # default: ../../../conf/ssl_chunk_${preset}.yaml
asr_config=             # default: ../../../conf/asr_chunk_${preset}.yaml
n_labelled=600          # corpus (stage 1): labelled utterances (fine-tuning set train)
n_pool=3000             #   unlabelled pre-training pool (holds the labelled ones)
n_valid=100             #   valid_seen and valid_unseen, each
n_test=300              #   test_seen and test_unseen, each
vocab_size=1000         #   sentences use only the most frequent words of the text collection
perturb=pool            #   sox speed/pitch perturbation of the training voices: all, pool, none
pool_voices=            #   speakers heard only in the pool ("espeak": espeak-ng's 48; empty: none)
pool_voice_share=0.5    #   share of the pool's extra renditions they speak
seed=0
ssl_train_set=pool      # data set of SSL pre-training (empty: train_set)
train_set=train         # data set of ASR fine-tuning
speed_perturb_factors="0.9 1.0 1.1"  # stage 2 copies train_set at these sox speeds into
                        # ${train_set}_sp (Kaldi's sp0.9-<utt> ids), which fine-tuning uses (the
                        # labelled set's only augmentation; TUNING.md); "" fine-tunes on train_set
valid_set=valid_seen
test_sets="test_seen test_unseen"
bpe_vocab=40            # SentencePiece unigram units (few: faster CTC learning on 30 min)
use_lm=true             # stage 4 also trains a token LM on ${lm_train_set}; decoding fuses it
lm_train_set=lm_text    #   the corpus's text-only sentences (never an evaluation sentence)
lm_config=              #   default: ../../../conf/lm_${preset}.yaml
lm_epochs=              #   empty: the config's max_epoch
lm_weight=0.8           #   in the offline beam search and the streaming prefix search (TUNING.md)
pretrained_ssl=         # an SSL model to fine-tune (empty: pre-train here, stages 5 and 6)
tokenizer_kind=random   # FSQ tokenizer: random (projection) or trained (autoencoder)
tokenizer_levels=2M     # FSQ levels preset
tokenizer_max_utts=     # utterances the tokenizer is fitted on (empty: all)
ssl_epochs=             # empty: the config's max_epoch
asr_epochs=
run_baseline=true       # also train ASR from scratch (stage 7)
side_by_side=true       # stage 7 trains both ASR models at once, one thread each (best on CPU)
beam_size=4             # offline beam search
ctc_weight=0.5          # decoding, as in training (conf/asr_chunk_mini.yaml)
maxlenratio=0.0         # 0: ESPnet's bound (the encoder length) with its end detection: the
                        # hypotheses of 1.0 in 12% less time (0.5 cut long sentences: TUNING.md)
inference_ngpu=0        # offline beam search on GPU (1) or CPU (0)
stream_chunk_sizes=16   # streaming chunk sizes in 40 ms encoder frames ("4 8 16 32": 160-1280 ms;
                        # each size streams 1200 utterances, about 4 minutes on 2 cores)
stream_beam_size=8      # CTC prefix beam of the streaming decoder (with the LM, 8 against 4: valid
                        # WER 3 to 4 points lower at 1.4x the time; TUNING.md)
stream_baseline=true    # also stream the from-scratch baseline
stream_device=cpu       # latency is measured where the decoder runs
deploy=true             # stage 9 also exports ${expdir}/asr_ssl to ONNX (fp32, int8) and decodes
deploy_chunk_size=16    #   the test sets with sherpa-onnx at this chunk size (x 40 ms) and
deploy_left_chunks=4    #   left context (the config trains with left_chunks_choices [-1, 4])
datadir=data
audio_dir=downloads/audio
expdir=exp

help_message="Usage: $0 [options]
Mini ASR recipe: flite/festival corpus -> statistics -> BPE and LM -> FSQ tokenizer -> Chunk SSL
-> ASR fine-tuning and from-scratch baseline -> offline and streaming decoding -> RESULTS.md and
plots in \${expdir}.
Stages: 1 data generation, 2 speed perturbation of train_set and data check, 3 feature statistics,
4 BPE (and, with --use_lm true, the token LM), 5 tokenizer and 6 SSL (only with --pretrained_ssl
''), 7 ASR fine-tuning from SSL and from scratch (baseline), 8 offline decoding, 9 streaming
decoding (and, with --deploy true, ONNX export and sherpa-onnx decoding), 10 scoring.
Re-run one stage with --stage N --stop_stage N (done stages are skipped unless options changed)."

. ../../TEMPLATE/stages.sh "$@"  # options, path.sh, log() and the shared stages
setdir=${datadir}
src_train_set=${train_set}
if [ -n "${speed_perturb_factors}" ]; then
    train_set=${train_set}_sp
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: generate the corpus (${n_labelled} labelled, pool ${n_pool}, ${n_valid}" \
        "validation and ${n_test} test utterances per voice group)"
    ${python} -m chunkssl_espnet.data mini-asr "${audio_dir}" "${datadir}" \
        --n-labelled "${n_labelled}" --n-pool "${n_pool}" --n-valid "${n_valid}" \
        --n-test "${n_test}" --vocab-size "${vocab_size}" --perturb "${perturb}" \
        --pool-voices ${pool_voices} --pool-voice-share "${pool_voice_share}" \
        --seed "${seed}" --nj "${nj}"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    if [ -n "${speed_perturb_factors}" ]; then
        log "Stage 2: speed perturbation (${speed_perturb_factors}) of ${datadir}/${src_train_set}" \
            "-> ${datadir}/${train_set}"
        speed_perturb "${datadir}/${src_train_set}" "${datadir}/${train_set}"
    fi
    log "Stage 2: validate the data directories, write utt2num_samples"
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe check-data --fs 16000 "${datadir}/$(ssl_set)" \
        "${datadir}/${train_set}" "${datadir}/${valid_set}" $(test_dirs)
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Stage 3: feature statistics (global MVN) and shapes"
    collect_stats
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    log "Stage 4: SentencePiece unigram, ${bpe_vocab} units -> $(bpe_dir asr)"
    train_bpe asr
    if [ "${use_lm}" = true ]; then
        log "Stage 4: token language model on ${datadir}/${lm_train_set} -> ${expdir}/lm"
        train_lm
    fi
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 5: FSQ tokenizer (${tokenizer_kind}, levels ${tokenizer_levels})"
    train_tokenizer
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ] && [ -z "${pretrained_ssl}" ]; then
    log "Stage 6: Chunk SSL pre-training -> ${expdir}/ssl"
    train_ssl
fi

if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
    log "Stage 7: ASR fine-tuning from the SSL encoder (${expdir}/asr_ssl) and from scratch" \
        "(${expdir}/asr_scratch)"
    train_downstream asr
fi

if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
    log "Stage 8: offline decoding (beam ${beam_size}) of $(models asr)"
    decode_offline asr
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    log "Stage 9: streaming decoding at chunk sizes ${stream_chunk_sizes} (x 40 ms)"
    decode_streaming asr
    if [ "${deploy}" = true ]; then
        log "Stage 9: ONNX export of ${expdir}/asr_ssl (chunk ${deploy_chunk_size}," \
            "${deploy_left_chunks} left chunks, fp32 and int8), sherpa-onnx decoding"
        # shellcheck disable=SC2046
        ${python} -m chunkssl_espnet.recipe deploy --model_dir "${expdir}/asr_ssl" \
            --data_dirs $(test_dirs) --chunk_size "${deploy_chunk_size}" \
            --num_left_chunks "${deploy_left_chunks}"
    fi
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: scoring, ${expdir}/RESULTS.md and ${expdir}/plots/"
    lm_note=
    if [ "${use_lm}" = true ]; then lm_note=", token LM fused (weight ${lm_weight})"; fi
    score_results asr \
        "mini_flite asr1 (${preset}): ${n_labelled} labelled utterances, SSL on ${n_pool}${lm_note}"
fi

log "Successfully finished stages ${stage}-${stop_stage}. Results: ${expdir}/RESULTS.md"

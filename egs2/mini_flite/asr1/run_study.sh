#!/usr/bin/env bash
# The study around the mini recipe's model (82 minutes on 2 cores after ./run.sh with
# --levels_sweep "1k 244M", 2026-12-03; the default's 64k row adds a pre-training, a
# fine-tuning and two decodings, about 20 minutes more by that run's stage times, not measured):
# sweeps that ask what the pre-training's settings and the amount of labelled data do, each
# fine-tuned and decoded like the main model, with the results in RESULTS_study.md and
# plots_study/ beside this script. Stage 1 is the main recipe itself (./run.sh up to
# fine-tuning: its corpus, statistics, BPE, 2M-level tokenizer, SSL model and both fine-tuned
# models are the sweeps' reference points; stages already done are skipped). Every stage is
# resumable: an interrupted study continues where it stopped, and a stage done with the same
# options is skipped.
set -euo pipefail

stage=1                 # first stage to run
stop_stage=6            # last stage to run
toy=false               # tiny sizes for the test suite (conf/toy.sh and the toy values below)
nj=2
ngpu=0
num_nodes=1
cpu_procs=2             # SSL pre-training: 2 CPU processes (DDP over gloo), as run.sh
dist_launcher=slurm
preset=mini
ssl_config=
asr_config=
seed=0
ssl_train_set=pool      # as run.sh
train_set=train
speed_perturb_factors="0.9 1.0 1.1"  # as run.sh: every fine-tuning set, the labelled
                        # subsets too, at these sox speeds ("": none)
valid_set=valid_seen
test_sets="test_seen test_unseen"
bpe_vocab=40
tokenizer_kind=random
tokenizer_levels=2M     # run.sh's FSQ levels (the codebook sweep's reference point)
tokenizer_max_utts=
ssl_epochs=             # empty: the config's max_epoch
asr_epochs=
levels_sweep="1k 64k 244M"  # FSQ level presets pre-trained besides run.sh's 2M
labelled_sweep="150 300"    # labelled subsets of train (utterances) besides all of it
second_seed=1           # seed of the repeated main comparison (empty: no seed sweep, stage 4 skipped)
beam_size=4
ctc_weight=0.5
maxlenratio=0.0         # as run.sh
use_lm=true             # as run.sh: its token LM (stage 1 trains it) fused in every decoding
lm_weight=0.8
datadir=data
audio_dir=downloads/audio
expdir=exp
out_md=RESULTS_study.md # the report (its plots go to plots_study/ beside it)

help_message="Usage: $0 [options]
Study around the mini recipe: 1 the main recipe up to fine-tuning (./run.sh --stop_stage 7),
2 codebook-size sweep (${levels_sweep} besides 2M: tokenizer, SSL, fine-tuning), 3 labelled-data
sweep (${labelled_sweep} utterances besides all: fine-tuning from SSL and from scratch), 4 the main
comparison with seed ${second_seed}, 5 offline decoding of every study model, 6 the report
(${out_md}, plots_study/)."

. ../../TEMPLATE/stages.sh "$@"
setdir=${datadir}
study=${expdir}/study
src_train_set=${train_set}
sp=${speed_perturb_factors:+_sp}  # the suffix of a speed-perturbed set
train_set=${train_set}${sp}
if [ "${toy}" = true ]; then  # the sweeps at toy size (conf/toy.sh sets the corpus and epochs)
    levels_sweep=1k labelled_sweep=24
fi
common=(--datadir "${datadir}" --expdir "${expdir}" --audio_dir "${audio_dir}" --nj "${nj}"
        --toy "${toy}" --seed "${seed}" --preset "${preset}" --use_lm "${use_lm}"
        --lm_weight "${lm_weight}" --speed_perturb_factors "${speed_perturb_factors}")

# The SSL config with another level preset -> ${study}/conf/ssl_<levels>.yaml
levels_config() {
    mkdir -p "${study}/conf"
    sed -E "s/^(        levels: ).*/\1$1/" "${ssl_config}" > "${study}/conf/ssl_$1.yaml"
    echo "${study}/conf/ssl_$1.yaml"
}
# A tokenizer and an SSL model: pretrain NAME LEVELS SEED CONFIG
pretrain() {
    local name=$1 levels=$2 s=$3 config=$4
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${study}/tokenizer_${name}" \
        -- ${python} -m chunkssl_espnet.bin.tokenizer_train --kind "${tokenizer_kind}" \
        --levels "${levels}" --data_dir "${setdir}/$(ssl_set)" --seed "${s}" \
        --stats_file "$(ssl_stats_dir)/train/feats_stats.npz" --out_dir "${study}/tokenizer_${name}"
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${config}" \
        --train_dir "${setdir}/$(ssl_set)" --valid_dir "${setdir}/${valid_set}" \
        --stats_dir "$(ssl_stats_dir)" --tokenizer_dir "${study}/tokenizer_${name}" \
        --output_dir "${study}/ssl_${name}" ${ssl_epochs:+--max_epoch ${ssl_epochs}} \
        $(dist_opts) $(cpu_opts) -- --seed "${s}"
}
# Fine-tuning from an SSL model: finetune OUT SSL_MODEL TRAIN_DIR STATS_DIR SEED [BASELINE_OUT]; with
# a baseline (the same from scratch), both side by side on one thread each, else on one thread
# (the callers run two at a time).
finetune() {
    local out=$1 ssl=$2 train=$3 stats=$4 s=$5 base=${6:-}
    local extra=(--init_param "${ssl}:encoder:encoder" --num_threads 1)
    if [ -n "${base}" ]; then extra+=(--baseline_output_dir "${base}" --concurrent); fi
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe train --task asr --config "$(task_config asr)" \
        --train_dir "${train}" --valid_dir "${setdir}/${valid_set}" --stats_dir "${stats}" \
        --token_list "$(bpe_dir asr)/tokens.txt" --bpemodel "$(bpe_dir asr)/bpe.model" \
        --output_dir "${out}" ${asr_epochs:+--max_epoch ${asr_epochs}} "${extra[@]}" \
        $(dist_opts) -- --seed "${s}"
}
ssl_of() { echo "${study}/ssl_$1/valid.loss.ave.pth"; }

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Study stage 1: the main recipe up to fine-tuning (./run.sh --stop_stage 7)"
    ./run.sh "${common[@]}" --stop_stage 7
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Study stage 2: codebook size, ${levels_sweep} (run.sh: 2M)"
    for lv in ${levels_sweep}; do
        pretrain "${lv}" "${lv}" "${seed}" "$(levels_config "${lv}")"
    done
    pids=()
    for lv in ${levels_sweep}; do  # two fine-tunings at a time, one thread each
        finetune "${study}/asr_${lv}" "$(ssl_of "${lv}")" \
            "${setdir}/${train_set}" "${expdir}/stats" "${seed}" &
        pids+=($!)
        if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
    done
    for p in "${pids[@]}"; do wait "${p}"; done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    log "Study stage 3: labelled data, ${labelled_sweep} utterances (run.sh: all of ${train_set})"
    for n in ${labelled_sweep}; do
        ${python} -m chunkssl_espnet.data subset --n "${n}" "${setdir}/${src_train_set}" \
            "${setdir}/${src_train_set}_${n}"
        if [ -n "${sp}" ]; then
            speed_perturb "${setdir}/${src_train_set}_${n}" "${setdir}/${src_train_set}_${n}${sp}"
        fi
        ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
            --train_dir "${setdir}/${src_train_set}_${n}${sp}" \
            --valid_dir "${setdir}/${valid_set}" --out_dir "${study}/stats_${n}" --nj "${nj}"
        finetune "${study}/asr_ssl_${n}" "$(ssl_model)" "${setdir}/${src_train_set}_${n}${sp}" \
            "${study}/stats_${n}" "${seed}" "${study}/asr_scratch_${n}"
    done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && [ -n "${second_seed}" ]; then
    log "Study stage 4: the main comparison with seed ${second_seed}"
    pretrain "seed${second_seed}" "${tokenizer_levels}" "${second_seed}" "${ssl_config}"
    finetune "${study}/asr_ssl_seed${second_seed}" "$(ssl_of "seed${second_seed}")" \
        "${setdir}/${train_set}" "${expdir}/stats" "${second_seed}" \
        "${study}/asr_scratch_seed${second_seed}"
fi

# Every model of the report: run.sh's two (their offline decodings are run.sh's stage 8, done
# here when run.sh stopped earlier; the options are run.sh's, in its order, so that they are not
# decoded again) and the study's.
study_models() {
    local m dirs="${expdir}/asr_ssl ${expdir}/asr_scratch"
    for lv in ${levels_sweep}; do dirs="${dirs} ${study}/asr_${lv}"; done
    for n in ${labelled_sweep}; do dirs="${dirs} ${study}/asr_ssl_${n} ${study}/asr_scratch_${n}"; done
    if [ -n "${second_seed}" ]; then
        for m in ssl scratch; do dirs="${dirs} ${study}/asr_${m}_seed${second_seed}"; done
    fi
    echo "${dirs# }"
}

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    log "Study stage 5: offline decoding (beam ${beam_size}) of every model of the report"
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe decode --task asr --model_dirs $(study_models) \
        --data_dirs $(test_dirs) --nj "${nj}" -- --beam_size "${beam_size}" \
        --ctc_weight "${ctc_weight}" $(lm_opts) --maxlenratio "${maxlenratio}"
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Study stage 6: the report -> ${out_md}"
    levels="codebook size (FSQ levels):2M=asr_ssl"
    for lv in ${levels_sweep}; do levels="${levels},${lv}=study/asr_${lv}"; done
    labelled="labelled utterances:"
    for n in ${labelled_sweep}; do labelled="${labelled}${n}=study/asr_ssl_${n}|study/asr_scratch_${n},"; done
    labelled="${labelled}all=asr_ssl|asr_scratch"
    sweeps=("${levels}" "${labelled}")
    if [ -n "${second_seed}" ]; then
        sweeps+=("seed:${seed}=asr_ssl|asr_scratch,${second_seed}=study/asr_ssl_seed${second_seed}|study/asr_scratch_seed${second_seed}")
    fi
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe study-report --exp_dir "${expdir}" --data_root "${setdir}" \
        --test_sets ${test_sets} --sweeps "${sweeps[@]}" --out "${out_md}" \
        --title "mini_flite asr1: study (offline decoding, beam ${beam_size})"
fi

log "Successfully finished study stages ${stage}-${stop_stage}: ${out_md}"

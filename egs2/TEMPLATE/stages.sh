# The shared parts of the egs2 recipes (our egs2/TEMPLATE): option parsing, the environment,
# log(), and, as bash functions, the stages that every recipe runs the same way, so that a fix
# lands once. Each run.sh declares its options (`name=default` lines) and help_message, then
#
#     . ../../TEMPLATE/stages.sh "$@"
#
# which parses the options (utils/parse_options.sh; with --toy true it loads conf/toy.sh first,
# so that options on the command line still win), sources path.sh and db.sh (when there is one),
# sets ${python}, ${ssl_config} (default conf/ssl_chunk_<preset>.yaml) and ${tokenizer_dir}, and
# appends the command to ${expdir}/commands.log. run.sh then runs its corpus stages and calls the
# functions below from its stage guards. Each function is one Python call (collect_stats: one per
# statistics folder): the package does the work, skips it when it is done with the same options,
# and records it (docs/recipes.md).
#
# The functions read these variables of run.sh: options, except those marked (set by run.sh),
# which run.sh derives after sourcing this file.
#   sets        setdir (set by run.sh: the folder of the data directories), ssl_train_set (empty:
#               train_set; SSL pre-training), train_set (fine-tuning), valid_set, test_sets
#   all         datadir (token lists go to its token_list/), expdir, nj, ngpu, num_nodes,
#               dist_launcher, cpu_procs
#   data        speed_perturb_factors and audio_dir (speed_perturb: the copies go to
#               ${audio_dir}_sp)
#   SSL         preset or ssl_config, tokenizer_kind, tokenizer_levels, tokenizer_max_utts (empty:
#               every utterance), seed, ssl_epochs (empty: the config's max_epoch)
#   downstream  preset or <task>_config, <task>_epochs, pretrained_ssl (empty: the SSL model of
#               this recipe), run_baseline, side_by_side, beam_size, maxlenratio, inference_ngpu,
#               stream_chunk_sizes, stream_beam_size, stream_baseline, stream_device; ASR:
#               bpe_vocab, ctc_weight, use_lm (unset: false), and with it lm_weight, lm_train_set,
#               lm_config (empty: conf/lm_<preset>.yaml), lm_epochs; ST: tgt_bpe_vocab,
#               src_bpe_vocab, stream_maxlenratio, tgt_text and src_text (set by run.sh: names
#               of the transcript files)
# where <task> is asr or st. A variable that a function needs and run.sh lacks stops the recipe
# (set -u) with "unbound variable".

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

_run_args=("$@")
. utils/parse_options.sh
if [ "${toy}" = true ]; then
    . conf/toy.sh
    . utils/parse_options.sh "${_run_args[@]}"
fi
. ./path.sh
if [ -f ./db.sh ]; then
    . ./db.sh
fi
python=${PYTHON}
ssl_config=${ssl_config:-${MAIN_ROOT}/conf/ssl_chunk_${preset}.yaml}
tokenizer_dir=${expdir}/tokenizer_${tokenizer_kind}
mkdir -p "${expdir}"
echo "$(date '+%Y-%m-%dT%H:%M:%S') $0 ${_run_args[*]}" >> "${expdir}/commands.log"
log "$0 ${_run_args[*]}"

# --- paths derived from the options ---------------------------------------------------------

# The set SSL pre-trains on, and its statistics (shared with fine-tuning when it is train_set).
ssl_set() { echo "${ssl_train_set:-${train_set}}"; }
ssl_stats_dir() {
    if [ "$(ssl_set)" = "${train_set}" ]; then
        echo "${expdir}/stats"
    else
        echo "${expdir}/stats_ssl"
    fi
}
# The SSL model that fine-tuning starts from.
ssl_model() { echo "${pretrained_ssl:-${expdir}/ssl/valid.loss.ave.pth}"; }
# The training config of a task: task_config asr|st
task_config() {
    local var=$1_config
    echo "${!var:-${MAIN_ROOT}/conf/$1_chunk_${preset}.yaml}"
}
# The folder of a SentencePiece model and its token list: bpe_dir asr|tgt|src
bpe_dir() {
    case "$1" in
        asr) echo "${datadir}/token_list/bpe_unigram${bpe_vocab}" ;;
        tgt) echo "${datadir}/token_list/tgt_bpe_unigram${tgt_bpe_vocab}" ;;
        src) echo "${datadir}/token_list/src_bpe_unigram${src_bpe_vocab}" ;;
    esac
}
# The models of a task: <task>_ssl, and <task>_scratch with --run_baseline true.
models() {
    local dirs=${expdir}/$1_ssl
    if [ "${run_baseline}" = true ]; then dirs="${dirs} ${expdir}/$1_scratch"; fi
    echo "${dirs}"
}
# The data directories of the test sets.
test_dirs() {
    local s dirs=
    for s in ${test_sets}; do dirs="${dirs} ${setdir}/${s}"; done
    echo "${dirs# }"
}
# Training on GPUs and nodes (recipe train's options).
dist_opts() {
    echo "--ngpu ${ngpu}"
    if [ "${num_nodes}" -gt 1 ]; then
        echo "--num_nodes ${num_nodes} --dist_launcher ${dist_launcher}"
    fi
}
# A CPU training that has the machine to itself: cpu_procs processes of one thread each (DDP
# over gloo; nothing with GPUs or with cpu_procs 1).
cpu_opts() {
    if [ "${ngpu}" -eq 0 ] && [ "${cpu_procs}" -gt 1 ]; then echo "--cpu_procs ${cpu_procs}"; fi
}

# --- the shared stages ------------------------------------------------------------------------

# Kaldi's speed perturbation of a labelled set: speed_perturb SRC DST writes DST, the utterances
# of SRC at the sox speeds ${speed_perturb_factors} (sp0.9-<utt> ...), and their wav files.
speed_perturb() {
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.data speed-perturb "$1" "$2" \
        --factors ${speed_perturb_factors} --audio-dir "${audio_dir}_sp" --nj "${nj}"
}

# Feature statistics (global MVN) and shape files of train_set and valid_set -> ${expdir}/stats,
# and of ssl_train_set -> ${expdir}/stats_ssl when SSL pre-trains here on another set.
collect_stats() {
    ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
        --train_dir "${setdir}/${train_set}" --valid_dir "${setdir}/${valid_set}" \
        --out_dir "${expdir}/stats" --nj "${nj}"
    if [ "$(ssl_set)" != "${train_set}" ] && [ -z "${pretrained_ssl:-}" ]; then
        ${python} -m chunkssl_espnet.recipe stats --config "${ssl_config}" \
            --train_dir "${setdir}/$(ssl_set)" --valid_dir "${setdir}/${valid_set}" \
            --out_dir "$(ssl_stats_dir)" --nj "${nj}"
    fi
}

# SentencePiece unigram model and ESPnet token list of the training transcripts: train_bpe KIND
# with KIND asr (text, bpe_vocab), tgt (${tgt_text}, tgt_bpe_vocab) or src (${src_text},
# src_bpe_vocab).
train_bpe() {
    local text vocab dir
    case "$1" in
        asr) text=text vocab=${bpe_vocab} ;;
        tgt) text=${tgt_text} vocab=${tgt_bpe_vocab} ;;
        src) text=${src_text} vocab=${src_bpe_vocab} ;;
    esac
    dir=$(bpe_dir "$1")
    ${python} -m chunkssl_espnet.recipe step --name bpe --out_dir "${dir}" -- \
        ${python} -m chunkssl_espnet.data spm-train --input "${setdir}/${train_set}/${text}" \
        --has-uttids --model-prefix "${dir}/bpe" --vocab-size "${vocab}" --model-type unigram \
        --token-list "${dir}/tokens.txt"
}

# The token-level language model (ESPnet's LM task) on ${setdir}/${lm_train_set}/text with the ASR
# BPE units -> ${expdir}/lm (its text shapes in ${expdir}/stats_lm). Config: lm_config, default
# conf/lm_<preset>.yaml.
train_lm() {
    local dir config=${lm_config:-${MAIN_ROOT}/conf/lm_${preset}.yaml}
    dir=$(bpe_dir asr)
    ${python} -m chunkssl_espnet.recipe text-stats --config "${config}" \
        --train_text "${setdir}/${lm_train_set}/text" --valid_text "${setdir}/${valid_set}/text" \
        --token_list "${dir}/tokens.txt" --bpemodel "${dir}/bpe.model" --out_dir "${expdir}/stats_lm"
    ${python} -m chunkssl_espnet.recipe train --task lm --config "${config}" \
        --train_dir "${setdir}/${lm_train_set}" --valid_dir "${setdir}/${valid_set}" \
        --stats_dir "${expdir}/stats_lm" --token_list "${dir}/tokens.txt" \
        --bpemodel "${dir}/bpe.model" --output_dir "${expdir}/lm" \
        ${lm_epochs:+--max_epoch ${lm_epochs}} --num_threads "${nj}"
}
# The decoding options of the language model (none unless use_lm is true).
lm_opts() {
    if [ "${use_lm:-false}" = true ]; then
        echo "--lm_train_config ${expdir}/lm/config.yaml --lm_file ${expdir}/lm/valid.loss.ave.pth"
        echo "--lm_weight ${lm_weight}"
    fi
}

# The FSQ tokenizer (its targets), fitted on the SSL set -> ${tokenizer_dir}.
train_tokenizer() {
    local device=
    if [ "${ngpu}" -gt 0 ]; then device="--device cuda"; fi
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe step --name tokenizer --out_dir "${tokenizer_dir}" -- \
        ${python} -m chunkssl_espnet.bin.tokenizer_train --kind "${tokenizer_kind}" \
        --levels "${tokenizer_levels}" --data_dir "${setdir}/$(ssl_set)" --seed "${seed}" \
        ${tokenizer_max_utts:+--max_utts ${tokenizer_max_utts}} \
        --stats_file "$(ssl_stats_dir)/train/feats_stats.npz" --out_dir "${tokenizer_dir}" \
        ${device}
}

# Chunk SSL pre-training on the SSL set -> ${expdir}/ssl.
train_ssl() {
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe train --task ssl --config "${ssl_config}" \
        --train_dir "${setdir}/$(ssl_set)" --valid_dir "${setdir}/${valid_set}" \
        --stats_dir "$(ssl_stats_dir)" --tokenizer_dir "${tokenizer_dir}" \
        --output_dir "${expdir}/ssl" ${ssl_epochs:+--max_epoch ${ssl_epochs}} $(dist_opts) \
        $(cpu_opts)
}

# Fine-tuning from the SSL encoder -> ${expdir}/<task>_ssl, and with --run_baseline true the same
# model from scratch -> ${expdir}/<task>_scratch (side by side with --side_by_side true, on a
# CPU): train_downstream asr|st
train_downstream() {
    local task=$1 epochs_var=$1_epochs tokens=() baseline=()
    if [ "${task}" = asr ]; then
        tokens=(--token_list "$(bpe_dir asr)/tokens.txt" --bpemodel "$(bpe_dir asr)/bpe.model")
    else
        tokens=(--token_list "$(bpe_dir tgt)/tokens.txt" --bpemodel "$(bpe_dir tgt)/bpe.model"
                --text_name "${tgt_text}" --src_token_list "$(bpe_dir src)/tokens.txt"
                --src_bpemodel "$(bpe_dir src)/bpe.model" --src_text_name "${src_text}")
    fi
    if [ "${run_baseline}" = true ]; then
        baseline=(--baseline_output_dir "${expdir}/${task}_scratch")
    fi
    local epochs=${!epochs_var} side
    side=$(cpu_opts)
    if [ "${run_baseline}" = true ] && [ "${side_by_side}" = true ]; then
        side="--concurrent --num_threads 1"
    fi
    # shellcheck disable=SC2046,SC2086
    ${python} -m chunkssl_espnet.recipe train --task "${task}" --config "$(task_config "${task}")" \
        --train_dir "${setdir}/${train_set}" --valid_dir "${setdir}/${valid_set}" \
        --stats_dir "${expdir}/stats" "${tokens[@]}" --init_param "$(ssl_model):encoder:encoder" \
        --output_dir "${expdir}/${task}_ssl" "${baseline[@]}" ${epochs:+--max_epoch ${epochs}} \
        $(dist_opts) ${side}
}

# Offline beam search of every model on every test set: decode_offline asr|st
decode_offline() {
    local task=$1 opts=(--beam_size "${beam_size}")
    if [ "${task}" = asr ]; then
        # shellcheck disable=SC2207
        opts+=(--ctc_weight "${ctc_weight}" $(lm_opts))
    fi
    opts+=(--maxlenratio "${maxlenratio}")
    if [ "${inference_ngpu}" -gt 0 ]; then opts+=(--ngpu "${inference_ngpu}"); fi
    # shellcheck disable=SC2046
    ${python} -m chunkssl_espnet.recipe decode --task "${task}" --model_dirs $(models "${task}") \
        --data_dirs $(test_dirs) --nj "${nj}" -- "${opts[@]}"
}

# Streaming decoding at every chunk size (ASR: CTC prefix beam search and rescoring; ST: local
# agreement, with BLEU and average lagging): decode_streaming asr|st
decode_streaming() {
    local task=$1 opts=(--beam_size "${stream_beam_size}") ref=() model_dirs
    if [ "${task}" = asr ]; then
        # shellcheck disable=SC2207
        opts+=(--ctc_weight "${ctc_weight}" $(lm_opts))
    else
        opts+=(--maxlenratio "${stream_maxlenratio}")
        ref=(--ref_name "${tgt_text}")
    fi
    opts+=(--device "${stream_device}")
    model_dirs=${expdir}/${task}_ssl
    if [ "${stream_baseline}" = true ]; then model_dirs=$(models "${task}"); fi
    # shellcheck disable=SC2046,SC2086
    ${python} -m chunkssl_espnet.recipe stream-decode --task "${task}" --model_dirs ${model_dirs} \
        --data_dirs $(test_dirs) --chunk_sizes ${stream_chunk_sizes} --nj "${nj}" "${ref[@]}" \
        -- "${opts[@]}"
}

# Scores (ASR: WER and CER; ST: BLEU), ${expdir}/RESULTS.md, results.json and plots/:
# score_results asr|st TITLE [TEMPLATE] (TEMPLATE: a markdown file whose "<!-- results -->" line
# the tables replace; TITLE heads the file otherwise).
score_results() {
    local task=$1 title=$2 metric=(--extra_metrics cer) label="Chunk SSL + fine-tuning" tmpl=()
    if [ "${task}" = st ]; then
        metric=(--metric bleu --text_name "${tgt_text}")
        label="Chunk SSL + ST"
    fi
    if [ $# -ge 3 ]; then tmpl=(--template "$3"); fi
    # shellcheck disable=SC2086
    ${python} -m chunkssl_espnet.recipe score --exp_dir "${expdir}" --data_root "${setdir}" \
        --test_sets ${test_sets} "${metric[@]}" --models "${task}_ssl=${label}" \
        "${task}_scratch=from scratch (baseline)" --ssl "ssl=Chunk SSL (${tokenizer_kind} FSQ)" \
        --title "${title}" "${tmpl[@]}"
}

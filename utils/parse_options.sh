#!/usr/bin/env bash
# Kaldi-compatible option parsing for recipe scripts; source it after declaring the defaults:
#
#   stage=1
#   use_gpu=false
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh
#
# Then `--stage 3`, `--use-gpu true` or `--use_gpu=true` overwrite the declared variables and the
# remaining positional arguments are left in "$@". Rules (as Kaldi's parse_options.sh):
#   * --foo-bar VAL, --foo_bar VAL and --foo-bar=VAL set foo_bar, which must already be declared;
#     an unknown option is an error (exit 1).
#   * a variable whose current value is true or false only accepts true or false.
#   * --config FILE sources FILE (bash `name=value` lines) before the other options, so the command
#     line wins over the file; it may be given more than once.
#   * --help or -h prints $help_message and the options with their current values, then exits 0.
#     The options listed are the `name=` lines of the script run ($0) above its first line that
#     sources a file (`. file`): this file, or egs2/TEMPLATE/stages.sh, which sources it.
#   * parsing stops at the first argument not starting with --, or after a bare --.

# All internal names start with _po_ so that they cannot clash with the caller's variables.
_po_die() { echo "$0: $*" 1>&2; exit 1; }

_po_print_help() {
    if [ -n "${help_message:-}" ]; then
        printf '%b\n' "${help_message}" 1>&2
    fi
    # List `name=` assignments at the start of a line of the script run, up to its first line
    # that sources a file: the declared options.
    [ -r "$0" ] || return 0
    local _po_names _po_n
    _po_names=$(sed -n -e '/^[[:space:]]*\(\.\|source\)[[:space:]]/q' \
        -e 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$0" | awk '!seen[$0]++')
    [ -n "${_po_names}" ] || return 0
    echo "Options (current values):" 1>&2
    for _po_n in ${_po_names}; do
        [ "${_po_n}" != help_message ] && [ -n "${!_po_n+x}" ] && printf '  --%-28s %s\n' "${_po_n//_/-}" "${!_po_n}" 1>&2
    done
    return 0
}

# Pass 1: source every --config file first.
_po_i=1
while [ "${_po_i}" -le $# ]; do
    _po_arg=${!_po_i}
    [ "${_po_arg}" = "--" ] && break
    if [ "${_po_arg}" = "--config" ] || [[ "${_po_arg}" == --config=* ]]; then
        if [ "${_po_arg}" = "--config" ]; then
            _po_i=$((_po_i + 1))
            [ "${_po_i}" -le $# ] || _po_die "option --config needs a file"
            _po_conf=${!_po_i}
        else
            _po_conf=${_po_arg#--config=}
        fi
        [ -r "${_po_conf}" ] || _po_die "cannot read config file '${_po_conf}'"
        # shellcheck disable=SC1090
        . "${_po_conf}"
    fi
    _po_i=$((_po_i + 1))
done

# Pass 2: the options themselves.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            _po_print_help
            exit 0 ;;
        --)
            shift
            break ;;
        --config=*)
            shift ;;
        --config)
            shift 2 ;;
        --*=*)
            _po_name=${1%%=*}
            _po_value=${1#*=}
            shift ;;
        --*)
            _po_name=$1
            [ $# -ge 2 ] || _po_die "option $1 needs a value"
            _po_value=$2
            shift 2 ;;
        *)
            break ;;
    esac
    [ -n "${_po_name:-}" ] || continue
    _po_name=${_po_name#--}
    _po_name=${_po_name//-/_}
    if ! [[ "${_po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ "${_po_name}" == _po_* ]] \
        || [ -z "${!_po_name+x}" ]; then
        _po_die "invalid option --${_po_name//_/-} (no such variable '${_po_name}'; see --help)"
    fi
    if [ "${!_po_name}" = "true" ] || [ "${!_po_name}" = "false" ]; then
        if [ "${_po_value}" != "true" ] && [ "${_po_value}" != "false" ]; then
            _po_die "option --${_po_name//_/-} expects true or false, not '${_po_value}'"
        fi
    fi
    printf -v "${_po_name}" '%s' "${_po_value}"
    _po_name=
done

unset -f _po_die _po_print_help
unset _po_i _po_arg _po_conf _po_name _po_value
true

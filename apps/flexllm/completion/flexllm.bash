# shellcheck shell=bash
# Bash completion for the `flexllm` command.
#
# Installed as $datadir/bash-completion/completions/flexllm (loaded on demand by bash-completion);
# or source it by hand: `source apps/flexllm/completion/flexllm.bash`. Self-contained: it does not
# need the bash-completion package's helpers.
#
# Completes subcommands, each subcommand's options, the values of options that take a fixed set
# (--thinking, --provider, --save-input, --load-balance, mock --thinking and --fault-draws), files
# (--config, batch INPUT, -o/--output, mock --log) and model names (-m/--model, set-model NAME),
# which it reads from the config file the command itself would read: --config FILE on the line,
# else $FLEXLLM_CONFIG, else ./flexllm.yaml, else ~/.flexllm/config.yaml. Both `--opt VALUE` and
# `--opt=VALUE` are understood, as are model names with ':' in them.

_flexllm_commands="ask chat batch models list set-model test init mock"

# Options per subcommand: the ones that take a value (_val) and the flags (_flag).
_flexllm_common_val="--config --base-url --api-key -m --model --provider --timeout --retry-times --mock-args --ca-cert --client-cert --client-key"
_flexllm_common_flag="--mock --insecure -h --help"
_flexllm_request_val="--system --temperature --max-tokens --thinking"
_flexllm_ask_val="$_flexllm_common_val $_flexllm_request_val"
_flexllm_ask_flag="$_flexllm_common_flag --no-stream"
_flexllm_chat_val="$_flexllm_ask_val"
_flexllm_chat_flag="$_flexllm_ask_flag"
_flexllm_batch_val="$_flexllm_common_val $_flexllm_request_val -o --output -c --concurrency --max-qps --save-input --endpoints --load-balance --flush-interval"
_flexllm_batch_flag="$_flexllm_common_flag --adaptive --cache --no-cache --no-progress --overwrite --prune"
_flexllm_models_val="$_flexllm_common_val"
_flexllm_models_flag="$_flexllm_common_flag"
_flexllm_test_val="$_flexllm_common_val"
_flexllm_test_flag="$_flexllm_common_flag"
_flexllm_list_val="--config"
_flexllm_list_flag="-h --help"
_flexllm_set_model_val="--config"
_flexllm_set_model_flag="-h --help"
_flexllm_init_val="--config"
_flexllm_init_flag="-f --force -h --help"
_flexllm_mock_val="--host --port --seed --model --latency --token-rate --response-len --reasoning-len --thinking --error-rate --error-status --rate-429 --drop-rate --hang-rate --malformed-rate --truncate-rate --fault-draws --retry-after --max-qps --qps-burst --log"
_flexllm_mock_flag="--echo -h --help"
# Before the subcommand.
_flexllm_global_val="--config"
_flexllm_global_flag="--version -h --help"

# _flexllm_words: sets `words` and `cword` from COMP_WORDS/COMP_CWORD, gluing back the pieces bash
# split off at '=' and ':' (they are in COMP_WORDBREAKS) unless whitespace separated them, so that
# `--save-input=full` and `qwen2.5:7b` are one word each, as the user typed them.
_flexllm_words() {
  words=()
  cword=0
  local brk="" line="${COMP_LINE-}" have_line="${COMP_LINE+x}" i w ws glue=0 n=-1
  [[ ${COMP_WORDBREAKS-} == *=* ]] && brk+="="
  [[ ${COMP_WORDBREAKS-} == *:* ]] && brk+=":"
  for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
    w=${COMP_WORDS[i]}
    ws=0 # whitespace before w on the line (unknown without COMP_LINE: assume none)
    if [[ -n $have_line ]]; then
      if [[ $line == [[:space:]]* ]]; then
        ws=1
        line=${line#"${line%%[![:space:]]*}"}
      fi
      line=${line#"$w"}
    fi
    local breakonly=0
    [[ -n $brk && -n $w && -z ${w//[$brk]/} ]] && breakonly=1
    if ((n >= 0 && !ws && (breakonly || glue))); then
      words[n]+=$w
    else
      words[++n]=$w
    fi
    glue=$breakonly
    ((i == COMP_CWORD)) && cword=$n
  done
  ((n >= 0)) || words=("")
}

# _flexllm_reply TEXT CANDIDATE...: COMPREPLY gets the candidates that start with TEXT. Bash
# replaces only the part of the word after its last '=' or ':', so that prefix is cut off.
_flexllm_reply() {
  local text=$1 c brk="" cut=""
  shift
  [[ ${COMP_WORDBREAKS-} == *=* ]] && brk+="="
  [[ ${COMP_WORDBREAKS-} == *:* ]] && brk+=":"
  [[ -n $brk ]] && cut=${text%"${text##*["$brk"]}"}
  for c in "$@"; do
    [[ $c == "$text"* ]] && COMPREPLY+=("${c#"$cut"}")
  done
}

# _flexllm_files TEXT [EXT]: files (only *.EXT and directories when EXT is given and some match).
_flexllm_files() {
  local text=$1 ext=${2-} f
  local -a found=()
  # Expand a leading ~ and drop the quotes/backslashes of what was typed, as the shell would.
  text=${text#[\"\']}
  text=${text%[\"\']}
  text=${text//\\/}
  compopt -o filenames 2>/dev/null # outside a completion (tests) there is nothing to set
  if [[ -n $ext ]]; then
    while IFS= read -r f; do found+=("$f"); done < <(compgen -f -X "!*.$ext" -- "$text")
    while IFS= read -r f; do found+=("$f"); done < <(compgen -d -- "$text")
  fi
  if ((${#found[@]} == 0)); then
    while IFS= read -r f; do found+=("$f"); done < <(compgen -f -- "$text")
  fi
  _flexllm_reply "$text" "${found[@]}"
}

# _flexllm_config_path: the config file the command would read for this line ("" if none); like
# the command, it does not look further when --config or $FLEXLLM_CONFIG names a missing file.
_flexllm_config_path() {
  local i w cfg="" given=0
  for ((i = 1; i < ${#words[@]}; i++)); do
    ((i == cword)) && continue
    w=${words[i]}
    if [[ $w == --config ]]; then
      ((i + 1 < ${#words[@]} && i + 1 != cword)) || continue
      cfg=${words[i + 1]}
      given=1
    elif [[ $w == --config=* ]]; then
      cfg=${w#--config=}
      given=1
    fi
  done
  if ((given)); then
    cfg=${cfg#[\"\']}
    cfg=${cfg%[\"\']}
    cfg=${cfg//\\/}
    # shellcheck disable=SC2088 # a literal "~/" typed on the line, expanded here
    [[ $cfg == "~/"* ]] && cfg=$HOME/${cfg#"~/"}
  elif [[ -n ${FLEXLLM_CONFIG-} ]]; then
    cfg=$FLEXLLM_CONFIG # used even when missing, as the command does (it fails then)
  elif [[ -f flexllm.yaml && -O flexllm.yaml && -z $(find flexllm.yaml -maxdepth 0 -perm /022) ]]; then
    cfg=flexllm.yaml # only when the command would use it: the user's, and writable by nobody else
  elif [[ -n ${HOME-} && -f $HOME/.flexllm/config.yaml ]]; then
    cfg=$HOME/.flexllm/config.yaml
  fi
  [[ -n $cfg && -f $cfg && -r $cfg ]] && printf '%s\n' "$cfg"
}

# _flexllm_models FILE: one line per entry of the file's top-level `models:` list, "NAME<TAB>ID"
# (NAME is the id when the entry has no name). Block style (`- id: x` / `  name: y`, in any
# order, with comments and quotes) and one-line maps (`- {id: x, name: y}`).
_flexllm_models() {
  awk '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function unquote(v,   q) {
      v = trim(v); q = substr(v, 1, 1)
      if (q == "\"" || q == "\047") {
        v = substr(v, 2)
        if (q == "\"") sub(/".*$/, "", v); else sub(/\047.*$/, "", v)
        return v
      }
      sub(/[ \t]+#.*$/, "", v)
      return trim(v)
    }
    function flush() {
      if (id != "" || name != "") print (name != "" ? name : id) "\t" id
      id = ""; name = ""
    }
    function pair(kv,   k) {        # "key: value" of the current entry
      kv = trim(kv)
      if (!match(kv, /^["\047]?[A-Za-z_]+["\047]?[ \t]*:/)) return
      k = substr(kv, 1, RLENGTH - 1); gsub(/["\047 \t]/, "", k)
      if (k == "id") id = unquote(substr(kv, RLENGTH + 1))
      else if (k == "name") name = unquote(substr(kv, RLENGTH + 1))
    }
    {
      sub(/\r$/, "")
      if ($0 ~ /^[ \t]*(#.*)?$/ || $0 ~ /^(---|\.\.\.)/) next
      match($0, /^[ \t]*/); ind = RLENGTH; line = substr($0, ind + 1)
      if (ind == 0 && line !~ /^-([ \t]|$)/) {         # a top-level key
        flush(); inside = (line ~ /^["\047]?models["\047]?[ \t]*:[ \t]*(#.*)?$/); keyind = -1
        next
      }
      if (!inside) next
      if (line ~ /^-([ \t]|$)/) {                       # a new entry
        flush(); line = substr(line, 2); match(line, /^[ \t]*/)
        keyind = (RLENGTH == length(line)) ? -1 : ind + 1 + RLENGTH
        line = substr(line, RLENGTH + 1)
        if (line == "") next
      } else if (keyind < 0) {
        keyind = ind                                    # first key under a bare "-"
      } else if (ind != keyind) {
        next                                            # nested deeper: not a key of the entry itself
      }
      if (line ~ /^\{/) {                               # - {id: x, name: y}
        sub(/^\{/, "", line); sub(/\}[^}]*$/, "", line)
        n = split(line, kvs, ",")
        for (i = 1; i <= n; i++) pair(kvs[i])
      } else {
        pair(line)
      }
    }
    END { flush() }
  ' "$1" 2>/dev/null
}

# _flexllm_model_names WHICH: the config's model names (WHICH=names) or names and ids (all).
_flexllm_model_names() {
  local cfg name id
  local -a out=()
  cfg=$(_flexllm_config_path)
  [[ -n $cfg ]] || return 0
  while IFS=$'\t' read -r name id; do
    out+=("$name")
    [[ $1 == all && -n $id && $id != "$name" ]] && out+=("$id")
  done < <(_flexllm_models "$cfg")
  ((${#out[@]})) && printf '%s\n' "${out[@]}" | awk '!seen[$0]++'
}

# _flexllm_value CMD OPTION TEXT: completes the value of OPTION of CMD ("" = before the command).
_flexllm_value() {
  local cmd=$1 opt=$2 text=$3 m
  local -a names=()
  case $opt in
    --config | -o | --output | --log | --ca-cert | --client-cert | --client-key) _flexllm_files "$text" ;;
    --thinking)
      if [[ $cmd == mock ]]; then
        _flexllm_reply "$text" none field tags
      else
        _flexllm_reply "$text" true false minimal low medium high
      fi
      ;;
    --provider) _flexllm_reply "$text" auto openai gemini claude ;;
    --fault-draws) _flexllm_reply "$text" even independent ;;
    --save-input) _flexllm_reply "$text" full last none ;;
    --load-balance) _flexllm_reply "$text" round_robin weighted random fallback least_busy latency ;;
    -m | --model)
      [[ $cmd == mock ]] && return 0 # the mock's --model is any name(s) it should report
      while IFS= read -r m; do names+=("$m"); done < <(_flexllm_model_names all)
      _flexllm_reply "$text" "${names[@]}"
      ;;
    *) ;; # free text or a number: nothing to offer
  esac
}

# _flexllm_has WORD LIST: whether WORD is one of the space-separated LIST.
_flexllm_has() { [[ " $2 " == *" $1 "* ]]; }

_flexllm() {
  COMPREPLY=()
  local -a words
  local cword
  _flexllm_words
  local cur=${words[cword]} i w cmd="" vals=$_flexllm_global_val flags=$_flexllm_global_flag
  local npos=0 dashdash=0 var

  # Find the subcommand and count the positionals before the word being completed.
  for ((i = 1; i < cword; i++)); do
    w=${words[i]}
    if ((dashdash)); then
      ((npos++))
    elif [[ $w == -- && -n $cmd ]]; then
      dashdash=1
    elif [[ $w == -?* ]]; then
      [[ $w != *=* ]] && _flexllm_has "$w" "$vals" && ((i++)) # skip the option's value
    elif [[ -z $cmd ]]; then
      cmd=$w
      var=${cmd//-/_}
      if _flexllm_has "$cmd" "$_flexllm_commands"; then
        vals=_flexllm_${var}_val
        flags=_flexllm_${var}_flag
        vals=${!vals}
        flags=${!flags}
      else
        return 0 # an unknown command: nothing sensible to offer
      fi
    else
      ((npos++))
    fi
  done

  # The value of an option: `--opt VALUE` or `--opt=VALUE`.
  if ((!dashdash)); then
    if [[ $cur == --*=* ]]; then
      _flexllm_has "${cur%%=*}" "$vals" && _flexllm_value "$cmd" "${cur%%=*}" "${cur#*=}"
      return 0
    fi
    if ((cword > 1)) && _flexllm_has "${words[cword - 1]}" "$vals"; then
      _flexllm_value "$cmd" "${words[cword - 1]}" "$cur"
      return 0
    fi
    if [[ $cur == -* ]]; then
      # shellcheck disable=SC2086 # the lists are space-separated option names
      _flexllm_reply "$cur" $vals $flags
      return 0
    fi
  fi

  # Positionals.
  local -a names=()
  local m
  # shellcheck disable=SC2086 # $_flexllm_commands is a space-separated list of names
  case $cmd in
    "") _flexllm_reply "$cur" $_flexllm_commands ;;
    batch) ((npos == 0)) && _flexllm_files "$cur" jsonl ;;
    set-model)
      if ((npos == 0)); then
        while IFS= read -r m; do names+=("$m"); done < <(_flexllm_model_names names)
        _flexllm_reply "$cur" "${names[@]}"
      fi
      ;;
    *) ;; # ask: the prompt's words; the rest take no positionals
  esac
  return 0
}

complete -F _flexllm flexllm

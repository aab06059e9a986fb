#!/usr/bin/env bash
# Tests the bash completion of `flexllm` (apps/flexllm/completion/flexllm.bash): sources it, sets
# COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT the way bash does for a command line, calls _flexllm
# and compares COMPREPLY. Runs in a temporary HOME and working directory; needs no build.
# Usage: cli_completion_test.sh PATH/TO/flexllm.bash [PATH/TO/flexllm]
#   (with the binary, also checks that every option of each subcommand's --help is offered;
#   prints each failure; exits 1 on any)
set -uo pipefail # not -e: every check runs and reports

script=${1:?usage: cli_completion_test.sh COMPLETION_SCRIPT}
[[ -f $script ]] || {
  echo "cli_completion_test: no such file: $script" >&2
  exit 2
}
script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
bin=${2:-}
[[ -z $bin ]] || bin=$(realpath "$bin")

work=$(mktemp -d "${TMPDIR:-/tmp}/cli_completion_test.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME=$work/home
unset FLEXLLM_CONFIG
COMP_WORDBREAKS=$' \t\n"\'><=;|&(:' # bash's default
export LC_ALL=C

# shellcheck source=/dev/null
source "$script"

failures=0
checks=0
fail() {
  printf 'FAIL: %s\n' "$*"
  ((failures++))
}

# comp LINE: COMP_* as bash sets them for LINE with the cursor at its end (unquoted words: split
# at whitespace, and '=' and ':' runs become words of their own), then runs _flexllm.
comp() {
  local line=$1 chunk
  local -a chunks
  COMP_WORDS=()
  read -ra chunks <<<"$line"
  for chunk in "${chunks[@]}"; do
    while [[ $chunk =~ ^([=:]+|[^=:]+)(.*)$ ]]; do
      COMP_WORDS+=("${BASH_REMATCH[1]}")
      chunk=${BASH_REMATCH[2]}
    done
  done
  [[ -z $line || $line == *[[:space:]] ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMPREPLY=()
  _flexllm
}

# comp_words CWORD WORD...: COMP_WORDS given directly (no COMP_LINE), cursor on word CWORD.
comp_words() {
  COMP_CWORD=$1
  shift
  COMP_WORDS=("$@")
  unset COMP_LINE COMP_POINT
  COMPREPLY=()
  _flexllm
}

sorted() { (($#)) && printf '%s\n' "$@" | sort; }
shown() { # the words as "[a b c]"
  local s
  s=$(sorted "$@" | tr '\n' ' ')
  printf '[%s]' "${s% }"
}

# expect WHAT WORD...: COMPREPLY holds exactly the WORDs (any order). WHAT names the situation.
expect() {
  local what=$1
  shift
  ((checks++))
  if [[ $(sorted "${COMPREPLY[@]}") != "$(sorted "$@")" ]]; then
    fail "$what: offers $(shown "${COMPREPLY[@]}"), want $(shown "$@")"
  fi
}

# expect_has WHAT WORD...: each WORD is offered; expect_lacks WHAT WORD...: none is.
expect_has() {
  local what=$1 w
  shift
  ((checks++))
  for w in "$@"; do
    [[ $'\n'$(sorted "${COMPREPLY[@]}")$'\n' == *$'\n'"$w"$'\n'* ]] ||
      fail "$what: does not offer '$w' (offers $(shown "${COMPREPLY[@]}"))"
  done
}
expect_lacks() {
  local what=$1 w
  shift
  ((checks++))
  for w in "$@"; do
    [[ $'\n'$(sorted "${COMPREPLY[@]}")$'\n' != *$'\n'"$w"$'\n'* ]] ||
      fail "$what: offers '$w', which it should not"
  done
}

# t LINE WORD...: completing LINE offers exactly the WORDs.
t() {
  local line=$1
  shift
  comp "$line"
  expect "'$line'" "$@"
}

# --- registration -------------------------------------------------------------------------------
((checks++))
[[ $(complete -p flexllm 2>/dev/null) == "complete -F _flexllm flexllm" ]] ||
  fail "the script does not register 'complete -F _flexllm flexllm' (got: $(complete -p flexllm 2>&1))"

# --- subcommands and global options -------------------------------------------------------------
mkdir -p "$HOME" "$work/empty"
cd "$work/empty" || exit 2
commands=(ask chat batch models list set-model test init mock)
t "flexllm " "${commands[@]}"
t "flexllm s" set-model
t "flexllm m" models mock
t "flexllm -" --version --help -h --config
t "flexllm --v" --version
t "flexllm --config x.yaml " "${commands[@]}"
t "flexllm --config=x.yaml " "${commands[@]}"
t "flexllm bogus " # an unknown command: nothing
t "flexllm ask hello " # the prompt's words: nothing to offer
t "flexllm models x "

# --- options of each subcommand ------------------------------------------------------------------
common=(--config --base-url --api-key --model --provider --timeout --retry-times --mock --mock-args --help
  --ca-cert --client-cert --client-key --insecure)
request=(--system --temperature --max-tokens --thinking)
t "flexllm batch --" "${common[@]}" "${request[@]}" --output --concurrency --max-qps --adaptive \
  --cache --no-cache --save-input --endpoints --load-balance --flush-interval --no-progress \
  --overwrite --prune
t "flexllm batch --no-" --no-cache --no-progress
comp "flexllm batch -"
expect_has "'flexllm batch -'" -m -o -c -h --output
t "flexllm ask --" "${common[@]}" "${request[@]}" --no-stream
t "flexllm chat --" "${common[@]}" "${request[@]}" --no-stream
t "flexllm models --" "${common[@]}"
t "flexllm test --" "${common[@]}"
t "flexllm list --" --config --help
t "flexllm set-model --" --config --help
t "flexllm init --" --config --force --help
comp "flexllm init -"
expect_has "'flexllm init -'" -f -h
t "flexllm mock --" --host --port --seed --model --latency --token-rate --response-len \
  --reasoning-len --echo --thinking --error-rate --error-status --rate-429 --drop-rate --hang-rate \
  --malformed-rate --truncate-rate --fault-draws --retry-after --max-qps --qps-burst --log --help
t "flexllm mock --r" --rate-429 --response-len --reasoning-len --retry-after
t "flexllm --config x.yaml batch --save" --save-input
t "flexllm batch -c 8 --no-p" --no-progress # -c's value is not taken for a positional
comp_words 4 flexllm ask --system '"be brief"' --th
expect "ask --system \"be brief\" --th (COMP_WORDS only)" --thinking

# --- option values -------------------------------------------------------------------------------
thinking=(true false minimal low medium high)
t "flexllm ask --thinking " "${thinking[@]}"
t "flexllm chat --thinking m" minimal medium
t "flexllm batch --thinking=" "${thinking[@]}"
t "flexllm batch --thinking=l" low
t "flexllm mock --thinking " none field tags
t "flexllm mock --thinking=t" tags
t "flexllm mock --fault-draws " even independent
t "flexllm mock --fault-draws=i" independent
t "flexllm batch --save-input " full last none
t "flexllm batch --save-input l" last
t "flexllm batch --save-input=" full last none
t "flexllm batch --save-input=f" full
t "flexllm batch --load-balance " round_robin weighted random fallback least_busy latency
t "flexllm batch --load-balance l" least_busy latency
t "flexllm batch --load-balance=r" round_robin random
t "flexllm test --provider " auto openai gemini claude
t "flexllm ask --provider=g" gemini
t "flexllm ask --temperature " # a number: nothing to offer
t "flexllm batch --concurrency " # a number: nothing to offer
t "flexllm ask --base-url " # free text: nothing to offer
t "flexllm batch --save-input full --load-balance " round_robin weighted random fallback least_busy latency
comp_words 3 flexllm batch --save-input =
expect "batch --save-input = (COMP_WORDS only)" full last none
comp_words 4 flexllm batch --save-input = n
expect "batch --save-input = n (COMP_WORDS only)" none

# --- files ---------------------------------------------------------------------------------------
mkdir -p "$work/files/data"
cd "$work/files" || exit 2
touch prompts.jsonl more.jsonl notes.txt 'with space.jsonl'
t "flexllm batch " data more.jsonl prompts.jsonl 'with space.jsonl' # .jsonl files and directories
t "flexllm batch p" prompts.jsonl
t "flexllm batch no" notes.txt # no .jsonl matches: any file
t "flexllm batch prompts.jsonl " # INPUT is given: nothing more
t "flexllm batch -o " data more.jsonl notes.txt prompts.jsonl 'with space.jsonl'
t "flexllm batch prompts.jsonl -o n" notes.txt
t "flexllm batch - --output " data more.jsonl notes.txt prompts.jsonl 'with space.jsonl'
t "flexllm batch --output=no" notes.txt
t "flexllm batch -o out.jsonl --cache " data more.jsonl prompts.jsonl 'with space.jsonl'
t "flexllm --config " data more.jsonl notes.txt prompts.jsonl 'with space.jsonl'
t "flexllm ask --config no" notes.txt
t "flexllm mock --log " data more.jsonl notes.txt prompts.jsonl 'with space.jsonl'
t "flexllm batch data/" # an empty directory

# --- model names from the config file -----------------------------------------------------------
mkdir -p "$HOME/.flexllm" "$work/local" "$work/etc"
cat >"$HOME/.flexllm/config.yaml" <<'EOF'
# flexllm configuration
default: home-a
system: "You are helpful."   # a comment
models:
  - id: gpt-4o-mini
    name: home-a
  - id: "deepseek-chat"   # quoted, with a comment
    name: 'home-b'
    provider: openai
    base_url: https://api.deepseek.com/v1
  - name: home-c
    id: qwen2.5:7b
    extra:
      id: nested-id-not-a-model
  - id: bare-id
batch:
  model: batch-model-not-an-entry
  endpoints:
    - base_url: http://127.0.0.1:8000/v1
      model: endpoint-model-not-an-entry
EOF
printf 'models:\r\n- id: local-id\r\n  name: local\r\n- {id: inline-id, name: "inline"}\r\n-\r\n  id: dash-alone\r\ndefault: local\r\n' \
  >"$work/local/flexllm.yaml"
printf 'models:\n  - id: env-model\n' >"$work/etc/env.yaml"
printf 'models:\n  - id: flag-id\n    name: flag-model\n' >"$work/etc/flag.yaml"

home_names=(home-a home-b home-c bare-id)
home_all=(home-a gpt-4o-mini home-b deepseek-chat home-c qwen2.5:7b bare-id)
cd "$work/empty" || exit 2
t "flexllm set-model " "${home_names[@]}" # ~/.flexllm/config.yaml
t "flexllm set-model home-" home-a home-b home-c
t "flexllm set-model home-a " # one NAME only
t "flexllm ask -m " "${home_all[@]}"
t "flexllm batch --model d" deepseek-chat
t "flexllm chat --model=home-c" home-c
t "flexllm ask -m qw" qwen2.5:7b
t "flexllm ask -m qwen2.5:" 7b # bash replaces only what follows the ':'
t "flexllm ask -m qwen2.5:7" 7b
t "flexllm mock --model " # the mock's --model is free text
t "flexllm set-model --config " # --config's value: files (none here)

cd "$work/local" || exit 2
chmod 644 flexllm.yaml
t "flexllm set-model " local inline dash-alone # ./flexllm.yaml wins over ~/.flexllm/config.yaml
t "flexllm test -m " local local-id inline inline-id dash-alone
chmod 664 flexllm.yaml # others could change it: the command skips it, and so does completion
t "flexllm set-model " "${home_names[@]}"
chmod 644 flexllm.yaml

export FLEXLLM_CONFIG=$work/etc/env.yaml
t "flexllm set-model " env-model # $FLEXLLM_CONFIG wins over ./flexllm.yaml
t "flexllm --config $work/etc/flag.yaml set-model " flag-model # --config wins over the rest
t "flexllm set-model --config $work/etc/flag.yaml " flag-model
t "flexllm --config=$work/etc/flag.yaml set-model " flag-model
t "flexllm ask --config $work/etc/flag.yaml -m " flag-model flag-id
comp_words 3 flexllm ask -m f --config "$work/etc/flag.yaml"
expect "ask -m f<cursor> --config FILE (COMP_WORDS only)" flag-model flag-id
comp_words 2 flexllm set-model "" --config "$work/etc/flag.yaml"
expect "set-model <cursor> --config FILE (COMP_WORDS only)" flag-model
t "flexllm set-model --config $work/etc/missing.yaml " # a missing --config file: no names
export FLEXLLM_CONFIG=$work/etc/missing.yaml
t "flexllm set-model " # $FLEXLLM_CONFIG names a missing file: the command fails, no names
unset FLEXLLM_CONFIG

mkdir -p "$HOME/cfg"
cp "$work/etc/flag.yaml" "$HOME/cfg/my.yaml"
t "flexllm --config ~/cfg/my.yaml set-model " flag-model
t "flexllm --config \"$HOME/cfg/my.yaml\" set-model " flag-model

# Drift: with the built binary given, every option its --help lists is offered by completion.
if [[ -n $bin ]]; then
  for cmd in $_flexllm_commands; do
    opts=$("$bin" "$cmd" --help | grep -oE '^ +(-[A-Za-z],)?--[a-z0-9-]+' | tr ',' ' ')
    for opt in $opts; do
      [[ $opt == --version ]] && continue
      comp "flexllm $cmd ${opt:0:2}"
      ((checks++))
      [[ $'\n'$(printf '%s\n' "${COMPREPLY[@]}")$'\n' == *$'\n'"$opt"$'\n'* ]] ||
        fail "'flexllm $cmd $opt' is in --help but completion does not offer it (offers: ${COMPREPLY[*]})"
    done
  done
fi

echo "cli_completion_test: $checks checks, $failures failed"
((failures == 0))

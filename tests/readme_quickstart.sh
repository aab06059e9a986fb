#!/usr/bin/env bash
# Runs the README's command quick start (the ```sh block after <!-- readme-quickstart -->)
# exactly as written, with the built `flexllm` first on PATH, in a fresh directory and HOME with
# no FLEXLLM_*/OPENAI_* variables, then checks what it should have left behind.
#   tests/readme_quickstart.sh README.md DIR_OF_FLEXLLM_BINARY
set -euo pipefail
readme=$(realpath "$1")
bindir=$(realpath "$2")
root=$(dirname "$readme")

block=$(awk '/<!-- readme-quickstart -->/ {found = 1; next}
             found && /^```sh/ {inside = 1; next}
             inside && /^```/ {exit}
             inside {print}' "$readme")
if [ -z "$block" ]; then
  echo "readme_quickstart: no \`\`\`sh block after <!-- readme-quickstart --> in $readme" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
ln -s "$root/examples" "$work/examples"
cd "$work"
for v in $(env | grep -oE '^(FLEXLLM|OPENAI)_[A-Z_]*' || true); do unset "$v"; done
export HOME="$work/home" PATH="$bindir:$PATH"

echo "--- running the README's quick start in $work"
bash -euxo pipefail -c "$block" > stdout.txt 2> stderr.txt || {
  status=$?
  cat stdout.txt stderr.txt
  echo "readme_quickstart: the block failed with exit status $status" >&2
  exit 1
}
cat stdout.txt stderr.txt

fail() {
  echo "readme_quickstart: $*" >&2
  exit 1
}
[ "$(wc -l < results.jsonl)" -eq 12 ] || fail "results.jsonl should hold the 12 example records"
grep -q '12 restored' stderr.txt || fail "the second batch should restore all 12 items"
[ -f home/.flexllm/config.yaml ] || fail "flexllm init should have written ~/.flexllm/config.yaml"
grep -q '^default: gpt' home/.flexllm/config.yaml || fail "set-model should have set default: gpt"
echo "readme_quickstart: ok"

#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds and runs two consumers: one through
# find_package(flexllm) (library and mock), one through pkg-config; and checks the command and its
# bash completion were installed. Usage: check.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/app" | grep -q "installed ok"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
g++ -std=c++20 "$here/consumer/plain.cpp" $(pkg-config --cflags --libs flexllm) -o "$work/plain"
"$work/plain" | grep -q "pkg-config build ok"
# The command and its bash completion.
[[ $("$work/prefix/bin/flexllm" --version) == "flexllm "* ]]
[ -f "$work/prefix/share/bash-completion/completions/flexllm" ]
echo "install check: find_package and pkg-config consumers built and ran; the command and its completion are installed"

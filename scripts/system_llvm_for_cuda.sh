#!/usr/bin/env bash
# Lets burn's `cuda` feature build without downloading LLVM. cubecl-cuda 0.11.3 always depends
# on cubecl-llvm, whose build dependency tracel-llvm-bundler 23.1.0-4 downloads a prebuilt LLVM
# 23.1 from GitHub into `$XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4` (there is no feature or
# environment variable to turn that off). It skips the download when that directory holds its
# sentinel file, and then links whatever `bin/llvm-config` there reports. This points it at
# Debian's LLVM (`llvm-22-dev` and `libpolly-22-dev`, from the Debian registry): LLVM 23 is not
# packaged for Debian 12, and the C API cubecl-llvm and pliron-llvm call is in LLVM 22 as well.
# Usage: bash scripts/system_llvm_for_cuda.sh   (needs root for apt-get, once)
set -euo pipefail
llvm_version=${LLVM_VERSION:-22}
if ! [ -x "/usr/lib/llvm-$llvm_version/bin/llvm-config" ] || ! [ -e "/usr/lib/llvm-$llvm_version/lib/libPolly.a" ] \
  || ! [ -e /usr/lib/x86_64-linux-gnu/libzstd.so ]; then
  # `llvm-config --libs` lists Polly, which Debian ships separately; `--system-libs` lists zstd.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "llvm-$llvm_version-dev" "libpolly-$llvm_version-dev" libzstd-dev >&2
fi
# `--system-libs` gives z3 as a path (`/usr/lib/x86_64-linux-gnu/libz3.so`), which the bundler
# turns into `-llibz3`: give the linker a `liblibz3.so` in its default search path.
z3=$(/usr/lib/llvm-$llvm_version/bin/llvm-config --link-static --system-libs | tr ' ' '\n' | grep '/libz3\.so$' || true)
if [ -n "$z3" ]; then
  ln -sf "$z3" "$(dirname "$z3")/liblibz3.so"
fi
bundle_dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
mkdir -p "$bundle_dir"
for entry in bin lib include; do
  ln -sfn "/usr/lib/llvm-$llvm_version/$entry" "$bundle_dir/$entry"
done
touch "$bundle_dir/.tracel-llvm-installed"
echo "$bundle_dir -> LLVM $(/usr/lib/llvm-$llvm_version/bin/llvm-config --version)"

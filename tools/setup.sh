#!/usr/bin/env bash
# Installs the Debian packages the project needs (idempotent) and builds it.
#   tools/setup.sh            release build in build/release
#   tools/setup.sh asan       adds the ASan+UBSan build in build/asan
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  librdkafka-dev librocksdb-dev flatbuffers-compiler libflatbuffers-dev
  libboost-dev libboost-system-dev libabsl-dev libssl-dev libfmt-dev libspdlog-dev
  libtomlplusplus-dev libcli11-dev libxxhash-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  if [[ -z $(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial -e auxfiles) ]]; then
    "${sudo_cmd[@]}" apt-get update -q
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { "${sudo_cmd[@]}" apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi

jobs=$(nproc)
build() {  # build <dir> <cmake args...>
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}
build build/release
if [[ ${1:-} == asan ]]; then
  build build/asan -DYRD_SANITIZE=ON
fi

#!/usr/bin/env bash
# Build KenLM's `lmplz` (ARPA estimation) and `build_binary` into tools/kenlm/bin from the
# kenlm 0.3.0 sdist on PyPI (it holds the full C++ source). Idempotent: does nothing when both
# binaries exist. About 40 s on 2 cores. Environment: PY (python whose pip downloads the sdist,
# default .venv/bin/python), JOBS (parallel compile jobs, default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KENLM_DIR="$ROOT/tools/kenlm"
BIN_DIR="$KENLM_DIR/bin"
VERSION="0.3.0"
SDIST_SHA256="c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8"
JOBS="${JOBS:-2}"
PY="${PY:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="python3"
# kenlm's CMakeLists asks Boost for unit_test_framework even when tests are off
APT_PACKAGES=(cmake g++ make libboost-program-options-dev libboost-system-dev
  libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)

if [[ -x "$BIN_DIR/lmplz" && -x "$BIN_DIR/build_binary" ]]; then
  echo "kenlm: lmplz and build_binary already in $BIN_DIR"
  exit 0
fi
started=$SECONDS

missing=()
if command -v dpkg >/dev/null; then
  for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
fi
if ((${#missing[@]})); then
  echo "kenlm: installing apt packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "kenlm: installing apt packages needs root; run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "kenlm: apt build dependencies present"
fi

download_dir="$KENLM_DIR/download"
sdist="$download_dir/kenlm-$VERSION.tar.gz"
if [[ ! -f "$sdist" ]]; then
  echo "kenlm: downloading the kenlm $VERSION sdist with $PY -m pip"
  mkdir -p "$download_dir"
  # --no-binary for kenlm only: its build dependencies (cmake, setuptools) stay wheels
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary kenlm \
    "kenlm==$VERSION" -d "$download_dir"
fi
if ! echo "$SDIST_SHA256  $sdist" | sha256sum -c --status; then
  echo "kenlm: checksum mismatch for $sdist (delete it and rerun)" >&2
  exit 1
fi

source_dir="$KENLM_DIR/src"
build_dir="$KENLM_DIR/build"
echo "kenlm: compiling lmplz and build_binary (cmake, $JOBS jobs)"
rm -rf "$source_dir" "$build_dir"
mkdir -p "$source_dir" "$build_dir"
tar -xzf "$sdist" -C "$source_dir" --strip-components=1
if ! cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF \
  >"$build_dir/cmake.log" 2>&1; then
  tail -n 30 "$build_dir/cmake.log" >&2
  echo "kenlm: cmake failed (log: $build_dir/cmake.log)" >&2
  exit 1
fi
if ! cmake --build "$build_dir" --target lmplz build_binary -j "$JOBS" \
  >"$build_dir/make.log" 2>&1; then
  tail -n 30 "$build_dir/make.log" >&2
  echo "kenlm: compilation failed (log: $build_dir/make.log)" >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
for name in lmplz build_binary; do
  # copy then rename, so an interrupted install never leaves a half-written binary
  cp "$build_dir/bin/$name" "$BIN_DIR/.$name.partial"
  mv "$BIN_DIR/.$name.partial" "$BIN_DIR/$name"
done
rm -rf "$source_dir" "$build_dir"
echo "kenlm: installed lmplz and build_binary in $BIN_DIR ($((SECONDS - started)) s)"

#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs what is missing, builds the
# release and the ASan+UBSan builds, then runs every test in the release build and the unit
# tests again under the sanitizers. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh asan
jobs=$(nproc)
status=0
echo "== unit tests under ASan+UBSan =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/asan --output-on-failure --timeout 900 -j "$jobs" -LE integration || status=1
# The release run comes last so its summary line closes the output.
echo "== all tests (release build) =="
ctest --test-dir build/release --output-on-failure --timeout 900 -j "$jobs" || status=1
exit "$status"

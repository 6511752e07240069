#!/usr/bin/env bash
# Run every test binary in the given build dirs (default: build), from the repo
# root, and end with one line "N passed, N failed" summing all of them. A binary
# that crashes or exits non-zero without printing FAIL counts as one failure.
set -u
cd "$(dirname "$0")/.."
[ $# -eq 0 ] && set -- build
pass=0; fail=0; failed_list=()
for dir in "$@"; do
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    name="$dir/tests/$(basename "$t")"
    export KVANT_BIN="$dir/kvant"
    out=$("$t" 2>/tmp/kvant_test_stderr.$$); rc=$?
    p=$(printf '%s\n' "$out" | grep -c '^ok ' || true)
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ' || true)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" -ne 0 ]; then
      failed_list+=("$name")
      echo "---- $name (exit $rc)"; printf '%s\n' "$out" | grep -v '^ok '
      tail -n 40 /tmp/kvant_test_stderr.$$
    else
      echo "ok   $name ($p tests)"
    fi
  done
done
rm -f /tmp/kvant_test_stderr.$$
for f in "${failed_list[@]+"${failed_list[@]}"}"; do echo "failed: $f"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Tests tools/count_targets.awk, the rules by which tools/test counts the
# targets of a `bazel test` summary, against a captured summary
# (tools/testdata/bazel_summary.log) and edge cases.
set -euo pipefail

dir="$(dirname "${BASH_SOURCE[0]}")"
awk_file="${dir}/count_targets.awk"
tmp="$(mktemp -d "${TEST_TMPDIR:-/tmp}/count_targets.XXXXXX")"
trap 'rm -rf "${tmp}"' EXIT
failures=0

check() {  # name expected actual
  if [[ "$2" != "$3" ]]; then
    printf 'FAIL %s\n  expected: %s\n  actual:   %s\n' "$1" "$2" "$3"
    failures=$((failures + 1))
  else
    printf 'ok   %s\n' "$1"
  fi
}

count() {  # log failures_file
  awk -v stage=plain -v failures_file="$2" -f "${awk_file}" "$1" 2>"${tmp}/stderr"
}

# The captured summary: 5 passed (PASSED, (cached) PASSED, FLAKY, an
# external repository's target, a target whose last line is a cached pass),
# 4 failed (FAILED, TIMEOUT, FAILED in N out of M, NO STATUS), SKIPPED
# counted as neither; progress, FAIL: and log-path lines ignored.
: >"${tmp}/failed"
check "counts of the captured summary" "5 4" \
  "$(count "${dir}/testdata/bazel_summary.log" "${tmp}/failed")"
check "failing targets listed once each" \
  "plain: //tests/lmdb:slow_test TIMEOUT in 300.0s
plain: //tests/node:no_status_test NO STATUS
plain: //tests/seal:multi_run_test FAILED in 3 out of 30 in 5.5s
plain: //tests/seal:nonce_pool_test FAILED in 5.5s" \
  "$(sort "${tmp}/failed")"
check "FLAKY reported on stderr" \
  "plain: //tests/ha:flaky_test FLAKY (counted as passed)" \
  "$(cat "${tmp}/stderr")"

# Nothing ran: 0 0 (tools/test then fails the stage as "no tests ran").
: >"${tmp}/empty.log"
check "empty log" "0 0" "$(count "${tmp}/empty.log" "${tmp}/failed2")"

# Only skipped targets: neither passed nor failed.
printf '//a:b   SKIPPED\n' >"${tmp}/skipped.log"
check "only skipped" "0 0" "$(count "${tmp}/skipped.log" "${tmp}/failed3")"

# A last line without a newline still counts.
printf '//a:b   PASSED in 1s' >"${tmp}/nonl.log"
check "no final newline" "1 0" "$(count "${tmp}/nonl.log" "${tmp}/failed4")"

# Text that merely mentions a label is not a summary line.
printf 'Testing //a:b PASSED\n  //a:c   PASSED in 1s\n' >"${tmp}/prose.log"
check "not at line start" "0 0" "$(count "${tmp}/prose.log" "${tmp}/failed5")"

if [[ ${failures} -ne 0 ]]; then
  echo "${failures} check(s) failed"
  exit 1
fi
echo "all checks passed"

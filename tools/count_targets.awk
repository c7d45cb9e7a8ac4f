# Counts the per-target lines of Bazel's test summary (a `bazel test` log):
#   awk -v stage=NAME -v failures_file=FILE -f tools/count_targets.awk LOG
# Prints "passed failed". A target counts once, by its last line (a target
# may appear both as "(cached) PASSED" and again); PASSED and FLAKY count as
# passed (FLAKY noted on stderr), SKIPPED (incompatible with the
# configuration) counts as neither, everything else (FAILED, TIMEOUT,
# NO STATUS, INCOMPLETE, REMOTE FAILURE, with or without "in N out of M")
# as failed, and appends "STAGE: LABEL STATUS" to failures_file.
# Used by tools/test; tested by tools/count_targets_test.sh against captured
# summaries in tools/testdata/.
/^(\/\/|@)[^ ]+ +(\(cached\) )?(PASSED|FLAKY|FAILED|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE|SKIPPED)/ {
  label = $1
  line = $0
  sub(/^[^ ]+ +/, "", line)
  sub(/^\(cached\) /, "", line)
  status[label] = line
}
END {
  p = 0; f = 0
  for (label in status) {
    s = status[label]
    if (s ~ /^(PASSED|FLAKY)/) {
      p++
      if (s ~ /^FLAKY/) print stage ": " label " FLAKY (counted as passed)" > "/dev/stderr"
    } else if (s ~ /^SKIPPED/) {
      # Incompatible with this configuration: neither passed nor failed.
    } else {
      f++
      print stage ": " label " " s >> failures_file
    }
  }
  print p, f
}

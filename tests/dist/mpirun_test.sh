#!/usr/bin/env bash
# Run a gpuml MPI test program under mpirun and judge the outcome.
#   mpirun_test.sh plain NP PROGRAM [ARGS]   pass iff mpirun exits 0
#   mpirun_test.sh twice NP PROGRAM [ARGS]   run twice: both pass and print the
#                                            same "DETHASH" line (bitwise
#                                            reproducible run to run)
#   mpirun_test.sh fault NP PROGRAM MODE     the last rank misbehaves on purpose;
#                                            pass iff every surviving rank
#                                            reports FAULT-OK and exits with
#                                            code 3, in time
# Environment: MPIRUN (default mpirun), MPI_TEST_TIMEOUT (seconds, default 120),
# MPIRUN_FLAGS (extra mpirun flags, e.g. "--mca btl tcp,self").
set -u
mode=$1 np=$2 prog=$3
shift 3

# CI runs as root, on a machine with fewer cores than ranks.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's own allocations are never freed; LeakSanitizer would report them.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
mpirun=${MPIRUN:-mpirun}
limit=${MPI_TEST_TIMEOUT:-120}
flags=(--oversubscribe --bind-to none -np "$np")
# shellcheck disable=SC2206 # word splitting wanted
[ -n "${MPIRUN_FLAGS:-}" ] && flags+=($MPIRUN_FLAGS)

run() { timeout --kill-after=10 "$limit" "$mpirun" "${flags[@]}" "$@"; }

case "$mode" in
plain)
  run "$prog" "$@"
  rc=$?
  [ $rc -eq 124 ] && echo "mpirun_test: timed out after $limit s" >&2
  exit $rc
  ;;
twice)
  out1=$(run "$prog" "$@") || { echo "$out1"; echo "mpirun_test: first run failed" >&2; exit 1; }
  out2=$(run "$prog" "$@") || { echo "$out2"; echo "mpirun_test: second run failed" >&2; exit 1; }
  echo "$out1"
  h1=$(grep '^DETHASH' <<<"$out1") h2=$(grep '^DETHASH' <<<"$out2")
  if [ -z "$h1" ] || [ "$h1" != "$h2" ]; then
    echo "mpirun_test: runs differ: '$h1' vs '$h2'" >&2
    exit 1
  fi
  echo "mpirun_test: both runs gave $h1"
  ;;
fault)
  # Open MPI 4.1 kills the whole job when a rank dies, unless recovery is
  # enabled; mpirun then exits 0 whatever the ranks return, so each rank is
  # wrapped to report its own exit code.
  # mpirun itself (orterun 4.1) now and then dies of a signal in its PMIx
  # logging when a rank is killed early ("ORTE_ERROR_LOG: Out of resource
  # ... show_help.c", then SIGSEGV), before any surviving rank got to report:
  # the fault handling under test never ran, so that one case is retried.
  for attempt in 1 2 3; do
    start=$(date +%s)
    out=$(run --enable-recovery sh -c '"$0" "$@"; echo "EXIT rank=$OMPI_COMM_WORLD_RANK code=$?"' "$prog" "$@" 2>&1)
    rc=$?
    end=$(date +%s)
    echo "$out" | grep -v 'PMIX ERROR: BAD-PARAM'
    echo "mpirun_test: mpirun exited $rc after $((end - start)) s"
    if [ $rc -gt 128 ] && [ $rc -ne 137 ] && ! grep -q '^FAULT-' <<<"$out"; then
      echo "mpirun_test: mpirun crashed (exit $rc) before any rank reported; attempt $attempt, retrying" >&2
      continue
    fi
    break
  done
  [ $rc -eq 124 ] && { echo "mpirun_test: HANG: timed out after $limit s" >&2; exit 1; }
  # The last rank is the one that misbehaves; it survives (and must detect
  # the fault too) unless it dies.
  survivors=$np
  case "${1:-}" in kill|exit) survivors=$((np - 1)) ;; esac
  fail=0
  for ((r = 0; r < survivors; r++)); do
    grep -q "^FAULT-OK rank=$r " <<<"$out" || { echo "mpirun_test: rank $r did not report FAULT-OK" >&2; fail=1; }
    grep -q "^EXIT rank=$r code=3\$" <<<"$out" || { echo "mpirun_test: rank $r did not exit with code 3" >&2; fail=1; }
  done
  grep -q '^FAULT-BAD' <<<"$out" && fail=1
  exit $fail
  ;;
*)
  echo "usage: $0 plain|twice|fault NP PROGRAM [ARGS]" >&2
  exit 2
  ;;
esac

#!/bin/sh
# Run one libFuzzer target for a while on a copy of its committed corpus, and say what happened:
#   scripts/fuzz-run.sh TARGET SECONDS      e.g. scripts/fuzz-run.sh fuzz-config 600
# Builds the libFuzzer targets ("make fuzz") if TARGET's binary is missing. The committed corpus is never changed:
# the run works in build/fuzz/runs/TARGET.XXXXXX (its corpus/ holds what the run found; its findings/ any crash,
# leak, timeout or out-of-memory input: once fixed, keep it in tests/fuzz/corpus/TARGET/ as a regression). Exits 1 if
# there were findings.
# Extra libFuzzer options can be passed in FUZZ_ARGS (e.g. FUZZ_ARGS="-max_len=8192 -dict=...").
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -ne 2 ]; then
	echo "usage: $0 TARGET SECONDS (TARGET: $(cd "$top/tests/fuzz" && ls fuzz-*.c | sed 's/\.c$//' | tr '\n' ' '))" >&2
	exit 2
fi
target=${1%.c}
seconds=$2
case "$seconds" in '' | *[!0-9]*) echo "$0: SECONDS must be a whole number" >&2; exit 2 ;; esac
[ -f "$top/tests/fuzz/$target.c" ] || { echo "$0: no such target tests/fuzz/$target.c" >&2; exit 2; }
[ -d "$top/tests/fuzz/corpus/$target" ] || { echo "$0: no corpus tests/fuzz/corpus/$target" >&2; exit 2; }

bin="$top/build/fuzz/tests/fuzz/$target"
[ -x "$bin" ] || (cd "$top" && make --no-print-directory fuzz >/dev/null)

mkdir -p "$top/build/fuzz/runs"
run=$(mktemp -d "$top/build/fuzz/runs/$target.XXXXXX")
mkdir "$run/corpus" "$run/findings"
cp "$top/tests/fuzz/corpus/$target"/* "$run/corpus/"
seeds=$(ls "$run/corpus" | wc -l)

# As "make asan" runs the replays; SoftHSM2's own leaks are suppressed (tests/lsan.supp).
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "$target: ${seconds}s on a copy of $seeds seeds in $run"
rc=0
# shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
"$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 -artifact_prefix="$run/findings/" \
	${FUZZ_ARGS:-} "$run/corpus" >"$run/log" 2>&1 || rc=$?

stat() { sed -n "s/^stat::$1: *//p" "$run/log" | tail -n 1; }
findings=$(ls "$run/findings" | wc -l)
echo "executions: $(stat number_of_executed_units) ($(stat average_exec_per_sec)/s), new inputs: $(stat new_units_added)," \
	"peak RSS: $(stat peak_rss_mb) MB, exit status: $rc"
grep -E "^#[0-9]+[[:space:]]+DONE" "$run/log" | tail -n 1 || true
if [ "$findings" -gt 0 ] || [ "$rc" -ne 0 ]; then
	echo "findings: $findings (in $run/findings; log in $run/log)"
	ls "$run/findings"
	grep -E 'ERROR: |SUMMARY: |runtime error:|deadly signal' "$run/log" | head -n 10 || true
	exit 1
fi
echo "findings: none"

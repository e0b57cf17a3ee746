#!/bin/sh
# Run keyd's test programs and fuzz-corpus replays; print one closing line "tests: N passed, N failed".
# Criterion runs each test in its own process; every test that touches a token makes its own under mkdtemp.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
export KEYD_TEST_SRCDIR="$top"
passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

sanitizer_report() {
	grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:' "$1"
}

for t in "$@"; do
	name=${t#"${BUILD:-build}"/tests/}
	case "$t" in
	*-replay)
		corpus="$top/tests/fuzz/corpus/$(basename "${t%-replay}")"
		if "$t" "$corpus" >"$log" 2>&1 && ! sanitizer_report "$log"; then
			passed=$((passed + 1)); echo "PASS  $name"
		else
			failed=$((failed + 1)); failures="$failures $name"; echo "FAIL  $name"; tail -n 30 "$log"
		fi
		;;
	*)
		"$t" --jobs="${KEYD_TEST_JOBS:-2}" --short-filename >"$log" 2>&1
		rc=$?
		line=$(grep 'Synthesis:' "$log" | tail -n 1)
		p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
		f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
		c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
		p=${p:-0}; f=$((${f:-0})); c=${c:-0}
		passed=$((passed + p))
		# A sanitizer report in any test's process fails the program, even where criterion saw the test pass.
		if sanitizer_report "$log"; then
			rc=1
		fi
		if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ] || [ -z "$line" ]; then
			[ "$f" -eq 0 ] && f=1
			failed=$((failed + f)); failures="$failures $name"
			echo "FAIL  $name ($p passed, $f failed, $c crashed)"
			grep -v '^\[----\] *$' "$log" | tail -n 60
		else
			echo "PASS  $name ($p tests)"
		fi
		;;
	esac
done

[ -n "$failures" ] && echo "failed:$failures"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

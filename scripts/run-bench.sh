#!/bin/sh
# Run keyd's benchmarks one after the other; each prints its own table with ratios taken in the same run.
# bench-api runs twice: on SoftHSM2 as it is, then as a network HSM (SoftHSM2 behind the PKCS#11 shim).
set -eu
for b in "$@"; do
	echo "== $(basename "$b")"
	"$b"
	case "$b" in
	*/bench-api)
		echo "== $(basename "$b") network"
		"$b" network
		;;
	esac
done

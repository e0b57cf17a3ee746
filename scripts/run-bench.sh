#!/bin/sh
# Run keyd's benchmarks one after the other; each prints its own table with ratios taken in the same run.
set -eu
for b in "$@"; do
	echo "== $(basename "$b")"
	"$b"
done

#!/bin/sh
# Renders a run's report.html in headless Chromium and saves a screenshot: the check that the
# page renders in a real browser. Needs Debian's chromium (apt-get install chromium).
# Usage: scripts/check-report.sh RUN_DIR [OUT.png]   (default OUT: RUN_DIR/report.png)
set -eu
run=${1:?usage: scripts/check-report.sh RUN_DIR [OUT.png]}
out=${2:-$run/report.png}
page="$(realpath "$run")/report.html"
test -f "$page" || { echo "$page: no report (run: mole report $run)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# no background networking: this machine's network is closed and Chromium would keep trying
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1360,1180 --screenshot="$out" "file://$page" 2>/dev/null
test -s "$out"
echo "$out"

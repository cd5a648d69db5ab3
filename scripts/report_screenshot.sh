#!/usr/bin/env bash
# Screenshot a busgan report in a real browser: scripts/report_screenshot.sh REPORT_HTML OUT_PNG
#
# Renders REPORT_HTML (e.g. runs/demo/report.html) with headless Chromium into OUT_PNG, a page
# WIDTH pixels wide and HEIGHT tall (environment variables, default 1280 and 6000; the page
# is cut at HEIGHT, so raise it for a long report). Needs Debian's chromium
# (`apt-get install -y chromium`); as root it runs without the sandbox. Nothing is fetched
# from the network: the report embeds its images.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 REPORT_HTML OUT_PNG (e.g. $0 runs/demo/report.html report.png)" >&2
    exit 2
fi
html=$1 out=$2
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "$0: chromium not found; install it with: apt-get install -y chromium" >&2
    exit 2
fi
if [ ! -f "$html" ]; then
    echo "$0: $html not found; give the report.html of a finished busgan run" >&2
    exit 2
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)  # Chromium refuses to start as root with it
out_abs=$(realpath -m "$out")
"$browser" --headless "${sandbox[@]}" --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --screenshot="$out_abs" \
    --window-size="${WIDTH:-1280},${HEIGHT:-6000}" "file://$(realpath "$html")" >/dev/null 2>&1 \
    || { echo "$0: chromium failed on $html; rerun it by hand without >/dev/null to see why" >&2; exit 1; }
[ -s "$out_abs" ] || { echo "$0: chromium wrote no screenshot to $out" >&2; exit 1; }
echo "$out"

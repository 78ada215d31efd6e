#!/usr/bin/env bash
# Vendor the dashboard's front-end libraries from npm into dashboard/static/vendor/ (committed to git).
#
# Versions are pinned in package.json / package-lock.json; `npm ci --ignore-scripts` installs exactly those
# into node_modules/ (ignored by git), then the browser builds and each package's licence are copied. The
# runtime serves these files as Django static files: it never needs npm, and no page loads from a CDN.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR="$ROOT/dashboard/static/vendor"
cd "$ROOT"

npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

copy() {  # copy <package> <file inside the package> [<destination name>]
  local pkg=$1 src=$2 dest=${3:-$(basename "$2")}
  mkdir -p "$VENDOR/$pkg"
  cp "node_modules/$pkg/$src" "$VENDOR/$pkg/$dest"
  # Source maps are not shipped: a dangling sourceMappingURL breaks collectstatic's manifest storage (production).
  sed -i '/^\/\/# sourceMappingURL=/d' "$VENDOR/$pkg/$dest"
}

licence() {  # licence <package>: the package's LICENSE file, whatever it is called
  local pkg=$1 f
  for f in LICENSE LICENSE.md LICENSE.txt license LICENCE; do
    if [ -f "node_modules/$pkg/$f" ]; then
      mkdir -p "$VENDOR/$pkg"
      cp "node_modules/$pkg/$f" "$VENDOR/$pkg/LICENSE"
      return 0
    fi
  done
  echo "no licence file found in node_modules/$pkg" >&2
  exit 1
}

version() { node -p "require('./node_modules/$1/package.json').version"; }

rm -rf "$VENDOR/chart.js" "$VENDOR/chartjs-chart-financial" "$VENDOR/chartjs-adapter-date-fns" "$VENDOR/date-fns" \
  "$VENDOR/kurkle-color" "$VENDOR/@kurkle"
copy chart.js dist/chart.umd.min.js
licence chart.js
copy chartjs-chart-financial dist/chartjs-chart-financial.min.js
licence chartjs-chart-financial
# The bundle build embeds date-fns, so the page needs no separate date-fns script; its licence ships too.
copy chartjs-adapter-date-fns dist/chartjs-adapter-date-fns.bundle.min.js
licence chartjs-adapter-date-fns
licence date-fns
# Chart.js's UMD build embeds @kurkle/color; its licence goes to kurkle-color/ (no "@" in static paths).
licence @kurkle/color
mv "$VENDOR/@kurkle/color" "$VENDOR/kurkle-color"
rmdir "$VENDOR/@kurkle"

cat > "$VENDOR/VERSIONS" <<TXT
chart.js $(version chart.js) MIT
chartjs-chart-financial $(version chartjs-chart-financial) MIT
chartjs-adapter-date-fns $(version chartjs-adapter-date-fns) MIT (bundle embeds date-fns)
date-fns $(version date-fns) MIT (licence for the copy embedded in the adapter bundle)
@kurkle/color $(version @kurkle/color) MIT (embedded in chart.umd.min.js)
TXT
echo "vendored into $VENDOR:"
cat "$VENDOR/VERSIONS"

#!/usr/bin/env bash
# Re-pin requirements/base.txt and dev.txt from the .in files with pip-compile --generate-hashes: the full closure,
# each package with the sha256 of every wheel and sdist on the index (all platforms, so the Linux x86_64 cp311
# wheels that `make setup` and the Dockerfile install are covered). Existing pins are kept unless an .in file
# changes them (pip-compile --upgrade-package NAME to move one). Install with pip install --require-hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.6.2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/tools"
"$tmp/tools/bin/pip" install -q "pip-tools==$PIP_TOOLS_VERSION"
compile() {  # <in> <out> <header line>
  (cd requirements && PIP_FIND_LINKS= "$tmp/tools/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --no-header -o "$2" "$1")
  { echo "$3"; echo "# (pip install --require-hashes). Regenerate: make lock"; grep -v '^--find-links' "requirements/$2" | sed '/./,$!d'; } \
    >"$tmp/out" && mv "$tmp/out" "requirements/$2"
}
compile base.in base.txt \
  "# Runtime dependencies: the full pinned closure of requirements/base.in, with the sha256 of every wheel and sdist"
compile dev.in dev.txt \
  "# Development and test dependencies: the full pinned closure of requirements/dev.in (constrained to base.txt), hashed"
echo "requirements pinned with hashes"

#!/usr/bin/env bash
# Re-pin requirements/base.txt and dev.txt from the .in files, each as the full closure of a clean venv.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/base" && "$tmp/base/bin/pip" install -q -r requirements/base.in
python3 -m venv "$tmp/dev" && "$tmp/dev/bin/pip" install -q -r requirements/dev.in
"$tmp/base/bin/pip" freeze --exclude-editable >"$tmp/base.freeze"
"$tmp/dev/bin/pip" freeze --exclude-editable >"$tmp/dev.freeze"
{ echo "# Runtime dependencies: the full pinned closure of requirements/base.in (pip freeze in a clean venv)."
  echo "# Regenerate: make lock"; cat "$tmp/base.freeze"; } >requirements/base.txt
{ echo "# Development and test dependencies: the pinned closure of requirements/dev.in beyond base.txt."
  echo "-r base.txt"; grep -vxFf "$tmp/base.freeze" "$tmp/dev.freeze"; } >requirements/dev.txt
echo "requirements pinned"

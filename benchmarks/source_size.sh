#!/usr/bin/env bash
# Issue 33's count: tracked .py files under detr_core/ and search/, lines as `wc -l` counts them
# (docstrings and comments included). Prints "<lines> lines in <modules> modules".
# Run from anywhere inside the repository: `bash benchmarks/source_size.sh [REV]` counts REV
# (default: the working tree's tracked files).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rev="${1:-}"
if [[ -z "$rev" ]]; then
  files=$(git ls-files 'detr_core/*.py' 'search/*.py')
  lines=$(cat $files | wc -l)
else
  files=$(git ls-tree -r --name-only "$rev" -- detr_core search | grep '\.py$')
  lines=$(for f in $files; do git show "$rev:$f"; done | wc -l)
fi
echo "$lines lines in $(echo "$files" | wc -l) modules"

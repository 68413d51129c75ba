#!/usr/bin/env bash
# Copies the source tree (tracked and new files; ignored ones such as build/ stay out) into DEST,
# so that a build there never replaces the extension of the main environment. tar keeps
# modification times, so a rebuild in DEST compiles only what changed.
#   scripts/copy-source-tree.sh DEST
set -euo pipefail
DEST=${1:?usage: scripts/copy-source-tree.sh DEST}
cd "$(dirname "$0")/.."
mkdir -p "$DEST"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | tar -c --null -T - -f - | tar -x -C "$DEST" -f -
else
    tar -c --exclude=./build --exclude=./.git -f - . | tar -x -C "$DEST" -f -
fi

#!/usr/bin/env bash
# Re-fetches the playground's browser files from the npm registry, exactly the
# versions below, into the versioned folders beside this script, and rewrites
# VERSIONS. Run it from anywhere; it needs npm and tar, and touches nothing else.
#
#   graph/http/playground/vendor.sh
#
# To move to other versions: change the list, run it, delete the old folders,
# then update the folder names in graph/http/playground.py (tests fail until they match).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package@version  folder
packages=(
  "react@18.3.1 react-18.3.1"
  "react-dom@18.3.1 react-dom-18.3.1"
  "graphiql@3.9.0 graphiql-3.9.0"
  "@graphiql/plugin-explorer@3.2.6 graphiql-plugin-explorer-3.2.6"
  # Not served: only its LICENSE, because plugin-explorer bundles its code.
  "graphiql-explorer@0.9.0 -"
)

versions="$here/VERSIONS"
{
  echo "# Package, version, npm integrity (sha512 of the tarball) and the files taken from it."
  echo "# Written by vendor.sh ($(date -u +%Y-%m-%d)) from 'npm pack' of each package."
} >"$versions"

for entry in "${packages[@]}"; do
  read -r spec folder <<<"$entry"
  mkdir -p "$work/$folder.tmp"
  # npm pack checks the tarball against the registry's integrity before writing it.
  meta="$(cd "$work" && npm pack --json --silent "$spec")"
  tarball="$(node -e 'const m=JSON.parse(process.argv[1])[0]; console.log(m.filename)' "$meta")"
  integrity="$(node -e 'const m=JSON.parse(process.argv[1])[0]; console.log(m.integrity)' "$meta")"
  tar -xzf "$work/$tarball" -C "$work/$folder.tmp"
  pkg="$work/$folder.tmp/package"
  case "$spec" in
    react@*)
      files=("umd/react.production.min.js" "LICENSE") ;;
    react-dom@*)
      files=("umd/react-dom.production.min.js" "LICENSE") ;;
    graphiql@*)
      files=("graphiql.min.js" "graphiql.min.css" "LICENSE") ;;
    @graphiql/plugin-explorer@*)
      # The package ships no LICENSE file; it is MIT (package.json) and lives in
      # the GraphiQL repository, whose LICENSE is graphiql's.
      cp "$work/graphiql-3.9.0.tmp/package/LICENSE" "$pkg/LICENSE"
      files=("dist/index.umd.js" "dist/style.css" "LICENSE") ;;
    graphiql-explorer@*)
      cp "$pkg/LICENSE" "$here/graphiql-plugin-explorer-3.2.6/LICENSE.graphiql-explorer"
      echo "$spec $integrity graphiql-plugin-explorer-3.2.6/LICENSE.graphiql-explorer" >>"$versions"
      continue ;;
  esac
  rm -rf "${here:?}/$folder"
  mkdir -p "$here/$folder"
  for file in "${files[@]}"; do
    cp "$pkg/$file" "$here/$folder/$(basename "$file")"
  done
  echo "$spec $integrity $(cd "$here" && ls "$folder" | sed "s|^|$folder/|" | tr '\n' ' ')" >>"$versions"
done
echo "wrote $versions"

#!/usr/bin/env bash
# Prints each failed assertion of a TAP log with the chain of subtests it sits in and its
# YAML diagnostics. Usage: tap-failures.sh LOG
set -uo pipefail
awk '
  function indentOf(s) { match(s, /^ */); return RLENGTH }
  /^ *# Subtest: / {
    d = int(indentOf($0) / 4); name = $0; sub(/^ *# Subtest: /, "", name)
    path[d] = name; for (k = d + 1; k in path; k++) delete path[k]
    next
  }
  /^ *not ok / {
    d = int(indentOf($0) / 4); chain = ""
    for (k = 0; k < d; k++) if (k in path) chain = chain (chain == "" ? "" : " > ") path[k]
    lines[++n] = "not ok in: " chain; lines[++n] = $0; inDiag = 1; diagIndent = indentOf($0); next
  }
  inDiag && /^ *---$/ && indentOf($0) > diagIndent { inYaml = 1; lines[++n] = $0; next }
  inYaml { lines[++n] = $0; if ($0 ~ /^ *\.\.\.$/) { inYaml = 0; inDiag = 0 }; if (n > 4000) exit; next }
  { inDiag = 0 }
  END {
    if (n == 0) exit
    print ""; print "# ---- failed assertions (" n " lines) ----"
    for (i = 1; i <= n; i++) print lines[i]
  }
' "$1"

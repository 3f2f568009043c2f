#!/usr/bin/env bash
# `make demo`: bring up the lab and migrate it with `pulumi up`, then show a
# per-node before/after summary and where the full report is.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tools/env.sh
source tools/env.sh

bash lab/lab-up.sh
pulumi stack select --create lab >/dev/null
echo "== pulumi up --stack lab (the lab's nodes move from Docker to containerd) =="
pulumi up --stack lab --yes --suppress-outputs
report=.state/lab-report.json
pulumi stack output --stack lab --json >"$report"
python - "$report" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
rows = [("NODE", "BEFORE", "AFTER", "KUBELET", "RUNTIME", "DISRUPTION", "RESULT")]
for name, node in sorted(report["nodes"].items()):
    window = re.search(r"window_ms=(\d+)", node.get("result", ""))
    rows.append((name, node["runtimeBefore"], node["runtimeAfter"], node["kubeletVersion"],
                 node["runtimeVersion"], f"{int(window.group(1)) / 1000:.1f}s" if window else "-",
                 node.get("result", "").split(" ")[0]))
widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
print()
for row in rows:
    print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
print(f"\nfleet: {json.dumps(report['fleet']['counts'])}; full report: {sys.argv[1]}")
PY
echo "The lab keeps running: 'make drift' checks it, 'make lab-down' stops it."

#!/usr/bin/env bash
# Checks the Kubernetes manifests in images/k8s (docs/scale-out.md#kubernetes):
#   1. every manifest against the Kubernetes 1.31 schemas, strictly (an
#      unknown field, a wrong type or an unknown kind fails), with
#      kubernetes-validate installed into the project's venv;
#   2. kustomization.yaml: valid YAML whose resources exist, and every
#      manifest but the *.example.yaml ones listed; the names the objects
#      refer to each other by (Services, selectors, ConfigMap keys, Secret
#      keys) match;
#   3. writer.toml and reader.toml from the ConfigMap with
#      `ferry-hub check-config`, when FERRY_HUB_BIN names the binary.
# Usage: [FERRY_HUB_BIN=target/debug/ferry-hub] scripts/validate-k8s.sh [dir]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# FERRY_VENV: the same venv as the tests (scripts/lib/peers.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib/peers.sh"
cd "$(ferry_root)"

K8S_VERSION=1.31
VALIDATOR=kubernetes-validate==1.37.0
dir="${1:-images/k8s}"
[ -d "$dir" ] || { echo "validate-k8s: FAILED: no directory $dir" >&2; exit 1; }

fail() { echo "validate-k8s: FAILED: $*" >&2; exit 1; }

ensure_venv
py="$FERRY_VENV/bin/python"
if ! "$py" -c "import kubernetes_validate.version as v, yaml; assert v.__version__ == '${VALIDATOR#*==}'" 2>/dev/null; then
  log "installing $VALIDATOR into $FERRY_VENV"
  # PyYAML comes with it (a dependency), for step 2 and 3.
  "$FERRY_VENV/bin/pip" install -q --disable-pip-version-check "$VALIDATOR"
fi

manifests=()
for f in "$dir"/*.yaml "$dir"/*.yml; do
  [ -e "$f" ] || continue
  [ "$(basename "$f")" = kustomization.yaml ] && continue
  manifests+=("$f")
done
[ ${#manifests[@]} -gt 0 ] || fail "no manifests in $dir"

# 1. Schemas. kubernetes-validate only warns (and exits 0) for a kind or
# apiVersion it has no schema for: a typo there would pass, so a WARN fails.
log "kubernetes-validate --strict --kubernetes-version $K8S_VERSION: ${manifests[*]}"
status=0
out=$("$FERRY_VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "${manifests[@]}" 2>&1) || status=$?
printf '%s\n' "$out"
[ "$status" -eq 0 ] || fail "the manifests do not match the Kubernetes $K8S_VERSION schemas (see ERROR above)"
if grep -q '^WARN' <<<"$out"; then
  fail "kubernetes-validate has no schema for an object above (WARN): a wrong kind or apiVersion"
fi

# 2 and 3. kustomization.yaml, the references between objects, and the hub
# configurations written out for check-config.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "kustomization.yaml and references between objects"
"$py" - "$dir" "$work" <<'EOF' || fail "kustomization.yaml or the references between objects (see above)"
import glob
import os
import sys

import yaml

d, work = sys.argv[1], sys.argv[2]
problems = []

kpath = os.path.join(d, "kustomization.yaml")
try:
    with open(kpath) as f:
        k = yaml.safe_load(f)
except (OSError, yaml.YAMLError) as e:
    sys.exit(f"{kpath}: {e}")
if not isinstance(k, dict) or k.get("kind") != "Kustomization":
    sys.exit(f"{kpath}: not a Kustomization")
resources = k.get("resources") or []
for r in resources:
    if not os.path.isfile(os.path.join(d, r)):
        problems.append(f"kustomization.yaml: resource {r} does not exist")
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    name = os.path.basename(f)
    if name != "kustomization.yaml" and not name.endswith(".example.yaml") and name not in resources:
        problems.append(f"kustomization.yaml: {name} is not listed in resources")
if not problems:
    print(f"kustomization.yaml: resources {', '.join(resources)}: exist, and every manifest is listed")

objects = []
for f in sorted(glob.glob(os.path.join(d, "*.yaml"))):
    if os.path.basename(f) == "kustomization.yaml":
        continue
    with open(f) as fh:
        objects += [(os.path.basename(f), o) for o in yaml.safe_load_all(fh) if o]
by_kind = {}
for src, o in objects:
    by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = (src, o)

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

pods = {}  # StatefulSet name -> pod template labels
for name, (src, sts) in by_kind.get("StatefulSet", {}).items():
    before = len(problems)
    spec = sts["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    pods[name] = labels
    if not matches(spec["selector"]["matchLabels"], labels):
        problems.append(f"{src}: statefulset/{name}: selector does not match its pod labels")
    svc = by_kind.get("Service", {}).get(spec["serviceName"])
    if svc is None or svc[1]["spec"].get("clusterIP") != "None":
        problems.append(f"{src}: statefulset/{name}: serviceName {spec['serviceName']} is not a headless Service here")
    pod = spec["template"]["spec"]
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        ports = {p["name"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                problems.append(f"{src}: {name}: {probe} port {port} is not a container port")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes and m["name"] not in claims:
                problems.append(f"{src}: {name}: volumeMount {m['name']} has no volume")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                secret = by_kind.get("Secret", {}).get(ref["name"])
                if secret is None or ref["key"] not in secret[1].get("stringData", {}):
                    problems.append(f"{src}: {name}: env {e['name']}: no key {ref['key']} in Secret {ref['name']} (secret.example.yaml)")
    for v in volumes.values():
        cm = v.get("configMap")
        if cm:
            found = by_kind.get("ConfigMap", {}).get(cm["name"])
            for item in cm.get("items", []):
                if found is None or item["key"] not in found[1].get("data", {}):
                    problems.append(f"{src}: {name}: ConfigMap {cm['name']} has no key {item['key']}")
    if len(problems) == before:
        print(f"statefulset/{name}: selector, serviceName, probes, volumes, Secret and ConfigMap keys match")

for kind in ("Service", "PodDisruptionBudget"):
    for name, (src, o) in by_kind.get(kind, {}).items():
        sel = o["spec"]["selector"]
        sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
        targets = [s for s, labels in pods.items() if matches(sel, labels)]
        if len(targets) != 1:
            problems.append(f"{src}: {kind.lower()}/{name}: selects {len(targets)} StatefulSets' pods, not one")
        else:
            print(f"{kind.lower()}/{name}: selects the pods of statefulset/{targets[0]}")

for name, (src, cm) in by_kind.get("ConfigMap", {}).items():
    for key, text in cm.get("data", {}).items():
        if key.endswith(".toml"):
            with open(os.path.join(work, key), "w") as out:
                out.write(text)

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
EOF

configs=("$work"/*.toml)
[ -e "${configs[0]}" ] || fail "no *.toml key in the ConfigMap"
if [ -z "${FERRY_HUB_BIN:-}" ]; then
  echo "validate-k8s: FERRY_HUB_BIN is not set: the hub configurations ($(cd "$work" && echo *.toml)) were not checked with ferry-hub check-config"
else
  [ -x "$FERRY_HUB_BIN" ] || fail "FERRY_HUB_BIN=$FERRY_HUB_BIN is not an executable"
  bad=()
  for c in "${configs[@]}"; do
    log "$FERRY_HUB_BIN check-config --config $(basename "$c") (from the ConfigMap)"
    if "$FERRY_HUB_BIN" check-config --config "$c"; then
      echo "validate-k8s: $(basename "$c"): check-config passed"
    else
      bad+=("$(basename "$c")")
    fi
  done
  [ ${#bad[@]} -eq 0 ] || fail "ferry-hub check-config rejected ${bad[*]} (ConfigMap in $dir/configmap.yaml)"
fi
echo "validate-k8s: ok: ${#manifests[@]} manifests valid for Kubernetes $K8S_VERSION (strict), kustomization.yaml and references consistent"

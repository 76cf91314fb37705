"""Render a kustomize base and check what JSON schemas cannot.

Usage: kubernetes-check.py BASE_DIR OUT_FILE

- kustomization.yaml lists every manifest in BASE_DIR, and each it lists exists;
- rendering: `kubectl kustomize` where kubectl is installed; otherwise our
  own renderer, which supports only `resources` (files in BASE_DIR) and
  `images` and refuses anything else. When both run, their documents must
  be equal, so the fallback cannot drift from kustomize unnoticed;
- every pod template: non-root, read-only root filesystem, no privilege
  escalation, every capability dropped, RuntimeDefault seccomp, no service
  account token, requests and limits;
- the Deployment: readiness and liveness probes, a termination grace period
  above preStop + TESSERA_SHUTDOWN_GRACE; the Service and the
  PodDisruptionBudget select exactly the Deployment's pods.

Writes the rendered documents to OUT_FILE for kubernetes-validate.
"""

import copy
import pathlib
import re
import shutil
import subprocess
import sys

import yaml

errors = []


def error(message):
    errors.append(message)
    print(f"kubernetes: ERROR {message}", file=sys.stderr)


def load_all(text, source):
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        error(f"{source}: not YAML: {e}")
        return []


def own_render(base, kustomization):
    """Concatenate the listed resources and apply `images`."""
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "images"}
    if unsupported:
        sys.exit(
            f"kubernetes: kustomization.yaml uses {sorted(unsupported)}, which only "
            "kustomize renders: install kubectl (or kustomize)"
        )
    docs = []
    for name in kustomization.get("resources", []):
        docs += load_all((base / name).read_text(), name)
    images = {i["name"]: i for i in kustomization.get("images", [])}
    for doc in docs:
        for container in containers(doc):
            image = container.get("image", "")
            name = re.split(r"[:@]", image, maxsplit=1)[0]
            if name in images:
                rule = images[name]
                new = rule.get("newName", name)
                if "digest" in rule:
                    container["image"] = f"{new}@{rule['digest']}"
                else:
                    tag = rule.get("newTag", image[len(name) + 1 :] if ":" in image else "")
                    container["image"] = f"{new}:{tag}" if tag else new
    return docs


def kubectl_render(base):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run(
        [kubectl, "kustomize", str(base)], capture_output=True, text=True
    )
    if out.returncode != 0:
        error(f"kubectl kustomize {base} failed:\n{out.stderr}")
        return []
    return load_all(out.stdout, "kubectl kustomize")


def pod_spec(doc):
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return doc.get("spec", {}).get("template", {}).get("spec", {})
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return doc.get("spec", {})
    return None


def containers(doc):
    spec = pod_spec(doc) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def key(doc):
    return (doc.get("kind"), doc.get("metadata", {}).get("name"))


def seconds(duration):
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    if not match:
        error(f"TESSERA_SHUTDOWN_GRACE {duration!r} is not a duration")
        return 0
    n, unit = int(match[1]), match[2]
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def check_pod(doc):
    where = "/".join(map(str, key(doc)))
    spec = pod_spec(doc)
    pod_sc = spec.get("securityContext", {})
    if spec.get("automountServiceAccountToken") is not False:
        error(f"{where}: automountServiceAccountToken must be false")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        error(f"{where}: pod seccompProfile must be RuntimeDefault")
    for c in containers(doc):
        sc = {**pod_sc, **c.get("securityContext", {})}
        name = f"{where} container {c.get('name')}"
        if sc.get("runAsNonRoot") is not True:
            error(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser", 0) == 0:
            error(f"{name}: runAsUser must be set, and not 0")
        csc = c.get("securityContext", {})
        if csc.get("readOnlyRootFilesystem") is not True:
            error(f"{name}: readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            error(f"{name}: allowPrivilegeEscalation must be false")
        if csc.get("capabilities", {}).get("drop") != ["ALL"]:
            error(f"{name}: capabilities must drop ALL")
        resources = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                error(f"{name}: resources.{part} must give cpu and memory")


def check_deployment(doc, docs):
    where = "Deployment/" + doc["metadata"]["name"]
    spec = doc["spec"]["template"]["spec"]
    labels = doc["spec"]["template"]["metadata"].get("labels", {})
    selector = doc["spec"]["selector"].get("matchLabels", {})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        error(f"{where}: its selector does not match its pod labels")
    for c in spec.get("containers", []):
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                error(f"{where} container {c['name']}: no {probe}")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        grace = seconds(env.get("TESSERA_SHUTDOWN_GRACE") or "20s")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        needed = grace + pre_stop.get("seconds", 0)
        if spec.get("terminationGracePeriodSeconds", 30) <= needed:
            error(
                f"{where}: terminationGracePeriodSeconds must exceed preStop + "
                f"shutdown grace ({needed:g}s)"
            )
    # Whatever selects this Deployment's pods selects only them.
    for other in docs:
        if other.get("kind") == "Service":
            sel = other["spec"].get("selector", {})
        elif other.get("kind") == "PodDisruptionBudget":
            sel = other["spec"].get("selector", {}).get("matchLabels", {})
        else:
            continue
        if sel != selector:
            error(f"{'/'.join(key(other))}: selector {sel} is not the Deployment's {selector}")


def main():
    base = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    listed = kustomization.get("resources", [])
    present = sorted(
        p.name for p in base.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml"
    )
    for name in sorted(set(present) - set(listed)):
        error(f"{base / name} is not listed in kustomization.yaml's resources")
    for name in listed:
        if not (base / name).is_file():
            error(f"kustomization.yaml lists {name}, which does not exist")
    if errors:
        sys.exit(1)

    ours = own_render(base, copy.deepcopy(kustomization))
    theirs = kubectl_render(base)
    if theirs is None:
        print("kubernetes: no kubectl: rendered by concatenating the resources")
        docs = ours
    else:
        docs = theirs
        if sorted(map(yaml.safe_dump, ours)) != sorted(map(yaml.safe_dump, theirs)):
            error("kubectl kustomize and .ci/kubernetes-check.py render different documents")
    if not docs:
        error(f"{base} renders no documents")
    seen = set()
    for doc in docs:
        if key(doc) in seen:
            error(f"{'/'.join(map(str, key(doc)))} is defined twice")
        seen.add(key(doc))
        if pod_spec(doc) is not None:
            check_pod(doc)
        if doc.get("kind") == "Deployment":
            check_deployment(doc, docs)
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    if errors:
        sys.exit(1)
    print(f"kubernetes: rendered {len(docs)} documents: " + ", ".join("/".join(key(d)) for d in docs))


main()

"""GitLab CI: ``.gitlab-ci.yml``.

Pipelines run for merge requests and pushes to the default branch. Every job but publish and deploy is
interruptible, and a new commit cancels the interruptible jobs of the branch's older pipelines
(``workflow:auto_cancel:on_new_commit``); a started publish or deploy is never cut in half.
"""

from __future__ import annotations

from typing import Any

from mloop.automation.ci import CIProvider, Secret, data_secrets
from mloop.automation.ci.plan import KUBERNETES_OUT, REPORT_DIR, REPORT_MARKER, STEP_CACHE, STORE, STORE_EXCLUDED, CIProject

WORKFLOW_FILE = ".gitlab-ci.yml"
DOCKER = "docker:27"
KUBECTL_VERSION = "v1.31.4"
TOKEN_VARIABLE = "MLOOP_GITLAB_TOKEN"
KUBECONFIG_VARIABLE = "MLOOP_KUBECONFIG"
TRACKING_VARIABLE = "MLOOP_TRACKING_URI"
MERGE_REQUEST = '$CI_PIPELINE_SOURCE == "merge_request_event"'
DEFAULT_BRANCH = '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "push"'

# One note per model report on the merge request, found again by its first line (the marker) and updated
# (PUT) by later runs, created (POST) by the first. The token is a project access token (scope api).
COMMENT = f"""\
notes="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
for file in {REPORT_DIR}/*.md; do
  marker=$(head -n 1 "$file")
  case "$marker" in "{REPORT_MARKER}"*) ;; *) echo "$file has no mloop-report marker: not posted"; continue ;; esac
  id=$(curl -fsS --header "PRIVATE-TOKEN: ${TOKEN_VARIABLE}" "$notes?per_page=100&sort=asc" \\
    | python -c 'import json, sys; print(next((str(n["id"]) for n in json.load(sys.stdin) if n["body"].startswith(sys.argv[1])), ""))' "$marker")
  if [ -n "$id" ]; then
    curl -fsS --request PUT --header "PRIVATE-TOKEN: ${TOKEN_VARIABLE}" --data-urlencode "body@$file" "$notes/$id" > /dev/null
    echo "updated note $id with $file"
  else
    curl -fsS --request POST --header "PRIVATE-TOKEN: ${TOKEN_VARIABLE}" --data-urlencode "body@$file" "$notes" > /dev/null
    echo "posted $file"
  fi
done"""


class GitLab(CIProvider):
    name = "GitLab CI"
    path = WORKFLOW_FILE

    def secrets(self, project: CIProject) -> list[Secret]:
        found = [*data_secrets(project), Secret(TOKEN_VARIABLE, "a project access token with the api scope (masked), to comment on merge requests"),
                 Secret(KUBECONFIG_VARIABLE, "a variable of type File holding the production cluster's kubeconfig "
                                             "(protected, environment production), read by the deploy job")]
        if not project.tracking_uri_in_file:
            found.append(Secret(TRACKING_VARIABLE, "an MLflow tracking server shared by all pipelines, so the gate "
                                                   "compares with the production champion (unset: each pipeline starts "
                                                   "an empty store and its candidate becomes the champion)",
                                required=False))
        return found

    def workflow(self, project: CIProject) -> dict[str, Any]:
        changes = {"changes": [project.at("**/*"), WORKFLOW_FILE]} if project.folder else {}
        enter = [f"cd {project.folder}"] if project.folder else []
        image = f"$CI_REGISTRY_IMAGE/{project.label}:$CI_COMMIT_SHA"
        no_python: dict[str, Any] = {"before_script": [], "cache": []}
        return {
            "workflow": {
                "auto_cancel": {"on_new_commit": "interruptible"},
                "rules": [{"if": MERGE_REQUEST, **changes},
                          {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", **changes}],
            },
            "stages": ["test", "train", "gate", "report", "publish", "deploy"],
            "variables": {"PIP_CACHE_DIR": "$CI_PROJECT_DIR/.cache/pip"},
            "default": {
                "image": f"python:{project.python}",
                "interruptible": True,
                "cache": [self._pip_cache(project)],
                "before_script": [*enter, project.install()],
            },
            "test": {"stage": "test", "before_script": [*enter, project.install(tests=True)], "script": project.checks()},
            "train": {
                "stage": "train",
                "needs": ["test"],
                "cache": [self._pip_cache(project),
                          {"key": {"files": project.cache_key_files[:2], "prefix": "mloop-steps"},  # GitLab takes 2 at most
                           "paths": [project.at(p) + "/" for p in STEP_CACHE]}],
                "script": project.train(),
                "artifacts": {"paths": [project.at(STORE) + "/"],
                              "exclude": [project.at(p) + "/**/*" for p in STORE_EXCLUDED],
                              "expire_in": "1 week"},
            },
            "gate": {
                "stage": "gate",
                "needs": ["train"],
                "script": project.gate(),
            },
            "report": {
                "stage": "report",
                "needs": ["train", {"job": "gate", "artifacts": False}],
                "rules": [{"if": MERGE_REQUEST, "when": "always"}],  # also when the gate failed: the note says why
                "script": [project.report(), COMMENT],
                "artifacts": {"paths": [project.at(REPORT_DIR) + "/"], "when": "always", "expire_in": "1 week"},
            },
            "package": {
                "stage": "publish",
                "needs": ["train", {"job": "gate", "artifacts": False}],
                "rules": [{"if": DEFAULT_BRANCH}],
                "script": [project.package(image)],
                "artifacts": {"paths": [project.at(KUBERNETES_OUT) + "/"], "expire_in": "1 week"},
            },
            "publish": {
                "stage": "publish",
                "needs": ["package"],
                "rules": [{"if": DEFAULT_BRANCH}],
                "image": DOCKER,
                "services": [f"{DOCKER}-dind"],
                "variables": {"DOCKER_TLS_CERTDIR": "/certs"},
                "interruptible": False,
                **no_python,
                "script": ['echo "$CI_REGISTRY_PASSWORD" | docker login --username "$CI_REGISTRY_USER" '
                           '--password-stdin "$CI_REGISTRY"',
                           f'docker build --tag "{image}" {project.at(KUBERNETES_OUT)}/image',
                           f'docker push "{image}"'],
            },
            "deploy": {
                "stage": "deploy",
                "needs": ["package", {"job": "publish", "artifacts": False}],
                "rules": [{"if": DEFAULT_BRANCH}],
                "environment": {"name": "production"},
                "resource_group": "production",
                "interruptible": False,
                "variables": {"KUBECTL_VERSION": KUBECTL_VERSION},
                **no_python,
                # deployment.yaml: a Deployment + Service (inferenceservice.yaml with KServe); the cluster needs the
                # Secret <name>-token once (see the manifests' README.md) and a pull secret for the registry.
                "script": ['curl -fsSLo /usr/local/bin/kubectl '
                           '"https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl"',
                           "chmod +x /usr/local/bin/kubectl",
                           f'export KUBECONFIG="${KUBECONFIG_VARIABLE}"',
                           f"kubectl apply -f {project.at(KUBERNETES_OUT)}/deployment.yaml",
                           f"kubectl rollout status deployment/{project.label} --timeout=5m"],
            },
        }

    def _pip_cache(self, project: CIProject) -> dict[str, Any]:
        files = [WORKFLOW_FILE] + ([project.at(project.requirements)] if project.requirements else [])
        return {"key": {"files": files, "prefix": "pip"}, "paths": [".cache/pip/"]}

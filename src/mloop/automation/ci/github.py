"""GitHub Actions: ``.github/workflows/mloop.yml``.

Least privilege: the workflow's token may only read the repository; the report job may also write pull
request comments and the publish job packages (ghcr.io). Runs of one branch share a concurrency group: a
new push cancels the run in progress and at most one waits.
"""

from __future__ import annotations

from typing import Any

from mloop.automation.ci import CIProvider, Secret, data_secrets
from mloop.automation.ci.plan import KUBERNETES_OUT, REPORT_DIR, REPORT_MARKER, STEP_CACHE, STORE, STORE_EXCLUDED, CIProject

CHECKOUT = "actions/checkout@v5"
SETUP_PYTHON = "actions/setup-python@v6"
CACHE = "actions/cache@v5"
UPLOAD = "actions/upload-artifact@v6"
DOWNLOAD = "actions/download-artifact@v7"
DOCKER_LOGIN = "docker/login-action@v4"
DOCKER_BUILD_PUSH = "docker/build-push-action@v7"
WORKFLOW_FILE = ".github/workflows/mloop.yml"
STORE_ARTIFACT = "mloop-store"
MANIFESTS_ARTIFACT = "kubernetes-manifests"
KUBECONFIG_SECRET = "MLOOP_KUBECONFIG"
TRACKING_SECRET = "MLOOP_TRACKING_URI"

# The comment on the pull request: one per model report, found again by its first line (the marker) and
# updated (PATCH) by later runs, created (POST) by the first.
COMMENT = f"""\
for file in {REPORT_DIR}/*.md; do
  marker=$(head -n 1 "$file")
  case "$marker" in "{REPORT_MARKER}"*) ;; *) echo "$file has no mloop-report marker: not posted"; continue ;; esac
  id=$(gh api "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" --paginate \\
    --jq ".[] | select(.body | startswith(\\"$marker\\")) | .id" | head -n 1)
  if [ -n "$id" ]; then
    gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" -f "body=$(cat "$file")" > /dev/null
    echo "updated comment $id with $file"
  else
    gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments" -f "body=$(cat "$file")" > /dev/null
    echo "posted $file"
  fi
done"""


class GitHub(CIProvider):
    name = "GitHub Actions"
    path = WORKFLOW_FILE

    def secrets(self, project: CIProject) -> list[Secret]:
        found = [*data_secrets(project), Secret(KUBECONFIG_SECRET, "the kubeconfig of the production cluster (a secret of the environment "
                                           "'production'), read by the deploy job")]
        if not project.tracking_uri_in_file:
            found.append(Secret(TRACKING_SECRET, "an MLflow tracking server shared by all runs, so the gate compares "
                                                 "with the production champion (unset: each run starts an empty "
                                                 "store and its candidate becomes the champion)", required=False))
        return found

    def workflow(self, project: CIProject) -> dict[str, Any]:
        on_default = f"github.event_name == 'push' && github.ref == 'refs/heads/{project.default_branch}'"
        paths = {"paths": [project.at("**"), WORKFLOW_FILE]} if project.folder else {}
        run_defaults: dict[str, str] = {"shell": "bash"}
        if project.folder:
            run_defaults["working-directory"] = project.folder
        workflow: dict[str, Any] = {
            "name": "mloop",
            "on": {"push": {"branches": [project.default_branch], **paths}, "pull_request": {**paths}},
            "permissions": {"contents": "read"},
            # a newer run cancels an older one, except on the default branch: a publish or deploy is never cut
            # in half there (one runs, the newest waits)
            "concurrency": {"group": "mloop-${{ github.ref }}",
                            "cancel-in-progress": f"${{{{ github.ref != 'refs/heads/{project.default_branch}' }}}}"},
        }
        if not project.tracking_uri_in_file:
            workflow["env"] = {TRACKING_SECRET: f"${{{{ secrets.{TRACKING_SECRET} }}}}"}
        workflow["defaults"] = {"run": run_defaults}
        workflow["jobs"] = {
            "test": self._job(project, "Test the pipeline and its data", [
                *self._setup(project, tests=True), *_steps(project, project.checks())]),
            "train": self._job(project, "Train (cached steps)", [
                *self._setup(project),
                {"name": "Restore the step cache", "uses": CACHE, "with": {
                    "path": "\n".join(project.at(p) for p in STEP_CACHE),
                    "key": "mloop-steps-${{ runner.os }}-${{ hashFiles(" + _quoted(
                        [*project.cache_key_files, project.at("**/*.dvc")]) + ") }}",
                    "restore-keys": "mloop-steps-${{ runner.os }}-"}},
                *_steps(project, project.train()),
                {"name": "Keep the MLflow store for the next jobs", "uses": UPLOAD, "with": {
                    "name": STORE_ARTIFACT,
                    "path": "\n".join([project.at(STORE), *(f"!{project.at(p)}" for p in STORE_EXCLUDED)]),
                    "include-hidden-files": True, "if-no-files-found": "error", "retention-days": 7}},
            ], needs=["test"]),
            "gate": self._job(project, "Promotion gate and data drift", [
                *self._setup(project), self._store(project), *_steps(project, project.gate())], needs=["train"]),
            "report": self._job(project, "Report on the pull request", [
                *self._setup(project), self._store(project), _run(project.report()),
                {"name": "Comment on the pull request", "env": {
                    "GH_TOKEN": "${{ github.token }}", "PR_NUMBER": "${{ github.event.pull_request.number }}"},
                 "run": COMMENT}],
                needs=["train", "gate"], permissions={"contents": "read", "pull-requests": "write"},
                # also when the gate failed: the comment says why
                condition="${{ !cancelled() && needs.train.result == 'success' && github.event_name == 'pull_request' }}"),
            "publish": self._job(project, "Publish the serving image", [
                *self._setup(project), self._store(project),
                {"name": "Image name", "run": 'echo "IMAGE=ghcr.io/${GITHUB_REPOSITORY,,}/' + project.label
                                               + ':${GITHUB_SHA}" >> "$GITHUB_ENV"'},
                _run(project.package("$IMAGE"), "Build context and manifests of the champion"),
                {"uses": DOCKER_LOGIN, "with": {"registry": "ghcr.io", "username": "${{ github.actor }}",
                                                "password": "${{ secrets.GITHUB_TOKEN }}"}},
                {"uses": DOCKER_BUILD_PUSH, "with": {"context": project.at(f"{KUBERNETES_OUT}/image"), "push": True,
                                                     "tags": "${{ env.IMAGE }}"}},
                {"name": "Keep the manifests for the deploy job", "uses": UPLOAD, "with": {
                    "name": MANIFESTS_ARTIFACT, "path": project.at(f"{KUBERNETES_OUT}/*.yaml"),
                    "if-no-files-found": "error"}},
            ], needs=["gate"], permissions={"contents": "read", "packages": "write"}, condition=on_default),
            "deploy": {
                "name": "Deploy to production",
                "needs": ["publish"],
                "if": on_default,
                "runs-on": "ubuntu-latest",
                "timeout-minutes": 15,
                "environment": "production",
                "defaults": {"run": {"shell": "bash", "working-directory": "."}},  # no checkout: the manifests only
                "steps": [
                    {"uses": DOWNLOAD, "with": {"name": MANIFESTS_ARTIFACT, "path": "manifests"}},
                    # deployment.yaml: a Deployment + Service; with KServe, apply inferenceservice.yaml instead.
                    # The cluster needs the Secret <name>-token once (see the manifests' README.md) and, for a
                    # private ghcr.io image, an imagePullSecret.
                    {"name": "kubectl apply", "env": {"KUBECONFIG_DATA": f"${{{{ secrets.{KUBECONFIG_SECRET} }}}}"},
                     "run": "umask 077\n"
                            'printf \'%s\\n\' "$KUBECONFIG_DATA" > "$RUNNER_TEMP/kubeconfig"\n'
                            'export KUBECONFIG="$RUNNER_TEMP/kubeconfig"\n'
                            "kubectl apply -f manifests/deployment.yaml\n"
                            f"kubectl rollout status deployment/{project.label} --timeout=5m"},
                ],
            },
        }
        return workflow

    def _job(self, project: CIProject, name: str, steps: list[dict[str, Any]], *, needs: list[str] | None = None,
             permissions: dict[str, str] | None = None, condition: str | None = None) -> dict[str, Any]:
        job: dict[str, Any] = {"name": name}
        if needs:
            job["needs"] = needs
        if condition:
            job["if"] = condition
        if permissions:
            job["permissions"] = permissions
        job |= {"runs-on": "ubuntu-latest", "timeout-minutes": 60, "steps": steps}
        return job

    def _setup(self, project: CIProject, *, tests: bool = False) -> list[dict[str, Any]]:
        dependencies = [WORKFLOW_FILE] + ([project.at(project.requirements)] if project.requirements else [])
        return [{"uses": CHECKOUT},
                {"uses": SETUP_PYTHON, "with": {"python-version": project.python, "cache": "pip",
                                                "cache-dependency-path": "\n".join(dependencies)}},
                _run(project.install(tests=tests), "Install")]

    def _store(self, project: CIProject) -> dict[str, Any]:
        return {"name": "The MLflow store of the train job", "uses": DOWNLOAD,
                "with": {"name": STORE_ARTIFACT, "path": project.at(STORE)}}


def _steps(project: CIProject, commands: list[str]) -> list[dict[str, Any]]:
    """A step per command; the data pull gets the remote's credentials (and only it)."""
    steps = [_run(command) for command in commands]
    for step in steps:
        if step["run"] == "mloop data pull" and project.remote_credentials:
            step["env"] = {name: f"${{{{ secrets.{name} }}}}" for name in project.remote_credentials}
    return steps


def _run(command: str, name: str | None = None) -> dict[str, Any]:
    return {"name": name or command, "run": command}


def _quoted(paths: list[str]) -> str:
    return ", ".join(f"'{p}'" for p in paths)

import copy

import pytest

from mloop.deploy.kubernetes import KubernetesOptions, k8s_name, manifests, validate
from mloop.errors import DeployError


def docs():
    return manifests("breast_cancer", "breast_cancer", "3", KubernetesOptions(replicas=2))


def test_every_written_manifest_validates():
    for documents in docs().values():
        for document in documents:
            validate(document)


def test_v2_probes_resources_and_the_token_as_a_secret_reference():
    [isvc] = docs()["inferenceservice.yaml"]
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    [env] = container["env"]
    assert env == {"name": "MLOOP_SERVING_TOKEN", "valueFrom": {"secretKeyRef": {"name": "breast-cancer-token", "key": "token"}}}
    deployment, service = docs()["deployment.yaml"]
    assert deployment["spec"]["replicas"] == 2 and isvc["spec"]["predictor"]["minReplicas"] == 2
    assert service["spec"]["ports"][0]["targetPort"] == 8080


def test_a_misspelt_field_is_caught():
    deployment = copy.deepcopy(docs()["deployment.yaml"][0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(DeployError, match=r"\$\.spec\.template\.spec\.containers\[0\].*'readinesProbe' was unexpected"):
        validate(deployment)


def test_a_missing_required_field_is_caught():
    deployment = copy.deepcopy(docs()["deployment.yaml"][0])
    del deployment["spec"]["selector"]
    with pytest.raises(DeployError, match="selector"):
        validate(deployment)


def test_inference_service_checks_its_predictor():
    [isvc] = copy.deepcopy(docs()["inferenceservice.yaml"])
    isvc["spec"]["predictor"]["replicas"] = 3
    with pytest.raises(DeployError, match=r"\$\.spec\.predictor.*'replicas' was unexpected"):
        validate(isvc)


@pytest.mark.parametrize(("path", "value", "message"), [
    (("spec", "predictor", "minReplicas"), "two", "is not of type 'integer'"),
    (("spec", "predictor", "containers", 0, "ports", 0, "containerPort"), "8080", "is not of type 'integer'"),
    (("metadata", "labelz"), {}, "'labelz' was unexpected"),
    (("spec", "predictor", "containers", 0, "imagePullPolicyy"), "Always", "'imagePullPolicyy' was unexpected"),
])
def test_the_inference_service_is_checked_against_kserves_schema(path, value, message):
    [isvc] = copy.deepcopy(docs()["inferenceservice.yaml"])
    target = isvc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(DeployError, match=message):
        validate(isvc)


def test_a_name_that_is_not_a_dns_label_is_refused():
    [isvc] = copy.deepcopy(docs()["inferenceservice.yaml"])
    isvc["metadata"]["name"] = "Breast_Cancer"
    with pytest.raises(DeployError, match="not a DNS-1123 label"):
        validate(isvc)


def test_an_unknown_kind_is_refused():
    with pytest.raises(DeployError, match="no schema"):
        validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})


@pytest.mark.parametrize(("name", "label"), [("breast_cancer", "breast-cancer"), ("9lives", "m-9lives"),
                                             ("My Model!", "my-model")])
def test_names_become_dns_labels(name, label):
    assert k8s_name(name) == label

"""Static checks of everything in cluster/ and jobs/: no Kubernetes, AWS or Ray cluster needed.

- the cluster-launcher YAML against the JSON schema shipped in the ray wheel, plus the semantic
  checks `ray up` runs after filling in the AWS defaults;
- the KubeRay manifests (ray.io/v1) for apiVersion, kind and the fields the CRDs require;
- the serve configs (georay/serve/serve_config.yaml and the RayService's serveConfigV2) against
  `ray.serve.schema.ServeDeploySchema`, and that every import_path imports;
- the RayJob entrypoints against the real `georay` argument parser;
- the Dockerfile, the jobs/ entrypoints and jobs/runtime_env.yaml.
"""

from __future__ import annotations

import copy
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBE = CLUSTER / "kubernetes"
LAUNCHER = CLUSTER / "aws" / "georay.yaml"
SERVE_CONFIG = REPO / "georay" / "serve" / "serve_config.yaml"
STAGES = ("curate", "train", "predict", "evaluate")  # one RayJob each
JOBS = (*STAGES, "knowledge", "baseline")  # jobs/<name>.py
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE_IN_PODS = f"georay:{VERSION}"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(KUBE.glob("*.yaml")) for d in _docs(p)]


def _of_kind(kind: str) -> list[tuple[str, dict]]:
    return [(name, d) for name, d in _manifests() if d.get("kind") == kind]


# ---------------------------------------------------------------- cluster launcher (AWS)


def _launcher_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_launcher_yaml_matches_the_schema_in_the_ray_wheel():
    config = yaml.safe_load(LAUNCHER.read_text())
    jsonschema.validate(config, _launcher_schema())
    # What `ray up` does before launching anything: merge the AWS defaults, then validate again
    # with the semantic checks (head type exists, min/max workers add up, docker config).
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_launcher_schema_check_rejects_a_broken_config():
    config = yaml.safe_load(LAUNCHER.read_text())
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu"]["max_wokers"] = 8  # typo: unknown key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _launcher_schema())
    broken = copy.deepcopy(config)
    del broken["available_node_types"]["gpu"]["node_config"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _launcher_schema())


def test_launcher_has_cpu_head_spot_gpu_workers_and_token_auth():
    config = yaml.safe_load(LAUNCHER.read_text())
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu = types["gpu"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu.get("min_workers", 0) == 0  # scale to zero when idle
    for cmd in config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]:
        assert "export RAY_AUTH_MODE=token" in cmd
    assert "--num-cpus=0" in config["head_start_ray_commands"][1]
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert config["docker"]["image"].endswith(f"/georay:{VERSION}")
    # No credentials in the file: S3 access comes from instance profiles.
    assert "AWS_SECRET_ACCESS_KEY" not in LAUNCHER.read_text()


# ---------------------------------------------------------------- KubeRay manifests


def _containers_problems(where: str, pod_template: object) -> list[str]:
    problems = []
    spec = pod_template.get("spec") if isinstance(pod_template, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        return [f"{where}.template.spec.containers: a non-empty list is required"]
    for i, c in enumerate(containers):
        at = f"{where}.template.spec.containers[{i}]"
        for key in ("name", "image"):
            if not isinstance(c.get(key), str) or not c[key]:
                problems.append(f"{at}.{key}: required string")
        for kind in ("requests", "limits"):
            for res, qty in (c.get("resources") or {}).get(kind, {}).items():
                if not (isinstance(qty, str) and QUANTITY.match(qty)):
                    problems.append(f"{at}.resources.{kind}.{res}: bad quantity {qty!r}")
    return problems


def _start_params_problems(where: str, group: dict) -> list[str]:
    params = group.get("rayStartParams", {})
    if not isinstance(params, dict):
        return [f"{where}.rayStartParams: must be a map"]
    # KubeRay's CRD types this as map[string]string: `num-cpus: 0` is rejected by the API server.
    return [
        f"{where}.rayStartParams.{k}: value must be a string, got {v!r}"
        for k, v in params.items()
        if not isinstance(v, str)
    ]


def raycluster_spec_problems(where: str, spec: object) -> list[str]:
    """Problems in a RayClusterSpec (RayCluster.spec, RayJob.spec.rayClusterSpec, ...)."""
    if not isinstance(spec, dict):
        return [f"{where}: a RayClusterSpec map is required"]
    problems = []
    if spec.get("rayVersion") != ray.__version__:
        problems.append(f"{where}.rayVersion: {spec.get('rayVersion')!r} != {ray.__version__}")
    if (spec.get("authOptions") or {}).get("mode") != "token":
        problems.append(f"{where}.authOptions.mode: token authentication must be on")
    head = spec.get("headGroupSpec")
    if not isinstance(head, dict):
        return [*problems, f"{where}.headGroupSpec: required"]
    problems += _start_params_problems(f"{where}.headGroupSpec", head)
    problems += _containers_problems(f"{where}.headGroupSpec", head.get("template"))
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        at = f"{where}.workerGroupSpecs[{i}]"
        if not isinstance(group.get("groupName"), str) or not DNS_LABEL.match(group["groupName"]):
            problems.append(f"{at}.groupName: required DNS label")
        problems += _start_params_problems(at, group)
        problems += _containers_problems(at, group.get("template"))
        lo, n, hi = (group.get(k, 0) for k in ("minReplicas", "replicas", "maxReplicas"))
        if not all(isinstance(x, int) for x in (lo, n, hi)) or not lo <= n <= hi:
            problems.append(f"{at}: need minReplicas <= replicas <= maxReplicas")
    return problems


def manifest_problems(doc: object) -> list[str]:
    """Structural problems of one KubeRay manifest (what the ray.io/v1 CRDs would reject)."""
    if not isinstance(doc, dict):
        return ["manifest must be a map"]
    kind, problems = doc.get("kind"), []
    want_api = "v1" if kind == "ServiceAccount" else "ray.io/v1"
    if doc.get("apiVersion") != want_api:
        problems.append(f"apiVersion: {doc.get('apiVersion')!r}, expected {want_api!r}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        problems.append(f"metadata.name: {name!r} is not a DNS-1123 label")
    spec = doc.get("spec")
    if kind == "RayCluster":
        problems += raycluster_spec_problems("spec", spec)
    elif kind == "RayJob":
        if not isinstance(spec, dict) or not isinstance(spec.get("entrypoint"), str):
            return [*problems, "spec.entrypoint: required string"]
        if "clusterSelector" not in spec:
            problems += raycluster_spec_problems("spec.rayClusterSpec", spec.get("rayClusterSpec"))
    elif kind == "RayService":
        if not isinstance(spec, dict) or not isinstance(spec.get("serveConfigV2"), str):
            return [*problems, "spec.serveConfigV2: required string (a YAML document)"]
        problems += raycluster_spec_problems("spec.rayClusterConfig", spec.get("rayClusterConfig"))
    elif kind != "ServiceAccount":
        problems.append(f"kind: unexpected {kind!r}")
    return problems


def test_kuberay_manifests_are_structurally_valid():
    kinds = {}
    for name, doc in _manifests():
        assert manifest_problems(doc) == [], name
        kinds.setdefault(doc["kind"], []).append(name)
    assert len(kinds["RayCluster"]) == 1
    assert len(kinds["RayService"]) == 1
    # One RayJob per stage.
    stages = {d["metadata"]["name"].removeprefix("georay-") for _, d in _of_kind("RayJob")}
    assert stages == set(STAGES)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
        (lambda d: d["metadata"].update(name="Georay_Cluster"), "metadata.name"),
        (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "string"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas=9), "minReplicas"),
        (lambda d: d["spec"].pop("headGroupSpec"), "headGroupSpec"),
        (lambda d: d["spec"].update(rayVersion="2.9.0"), "rayVersion"),
        (lambda d: d["spec"].pop("authOptions"), "authOptions"),
        (
            lambda d: d["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop(
                "image"
            ),
            "image",
        ),
    ],
)
def test_manifest_check_catches_broken_manifests(mutate, expected):
    (_, doc), *_ = _of_kind("RayCluster")
    doc = copy.deepcopy(doc)
    mutate(doc)
    problems = manifest_problems(doc)
    assert any(expected in p for p in problems), problems


def _pod_specs(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [g["template"]["spec"] for g in groups]


def _cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for name, doc in _manifests():
        spec = doc.get("spec", {})
        for key in ("rayClusterSpec", "rayClusterConfig"):
            if key in spec:
                out.append((name, spec[key]))
        if doc["kind"] == "RayCluster":
            out.append((name, spec))
    return out


def test_every_pod_runs_the_georay_image_with_the_s3_identity():
    for name, spec in _cluster_specs():
        # A CPU-only head: no tasks or actors there, so losing it loses no work.
        assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", name
        for pod in _pod_specs(spec):
            assert pod.get("serviceAccountName") == "georay", name
            for c in pod["containers"]:
                assert c["image"] == IMAGE_IN_PODS, (name, c["image"])
                assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(c), name


def test_gpu_groups_ask_for_gpus_and_tolerate_gpu_taints():
    gpu_groups = 0
    for name, spec in _cluster_specs():
        for group in spec.get("workerGroupSpecs", []):
            if group["groupName"] != "gpu":
                continue
            gpu_groups += 1
            pod = group["template"]["spec"]
            limits = pod["containers"][0]["resources"]["limits"]
            assert limits.get("nvidia.com/gpu") == "1", name
            assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", [])), name
            mounts = pod["containers"][0].get("volumeMounts", [])
            assert any(m["mountPath"] == "/dev/shm" for m in mounts), name
    assert gpu_groups >= 4  # the RayCluster, curate, train, predict (and the RayService)


def _entrypoint_commands(entrypoint: str) -> list[list[str]]:
    return [shlex.split(part) for part in entrypoint.split("&&")]


def test_rayjob_entrypoints_are_valid_georay_commands():
    from georay.cli import build_parser

    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)
    missing = set()
    for name, doc in _of_kind("RayJob"):
        for argv in _entrypoint_commands(doc["spec"]["entrypoint"]):
            assert argv[0] == "python", name
            script = Path(argv[1])
            assert script.parent == Path("/home/ray/georay/jobs"), name  # cluster/Dockerfile
            assert (REPO / "jobs" / script.name).is_file(), name
            stage = script.stem
            if stage not in registered:
                missing.add(stage)
                continue
            # Exactly what jobs/<stage>.py hands to georay.cli.main: must parse.
            args = parser.parse_args([stage, *argv[2:]])
            assert args.command, name
    assert not missing, f"jobs for commands georay does not have: {sorted(missing)}"


# ---------------------------------------------------------------- serve configs


def _rayservice() -> dict:
    ((_, doc),) = _of_kind("RayService")
    return doc


def _serve_configs() -> list[tuple[str, dict]]:
    configs = [
        ("rayservice.yaml serveConfigV2", yaml.safe_load(_rayservice()["spec"]["serveConfigV2"]))
    ]
    if SERVE_CONFIG.is_file():
        configs.append((SERVE_CONFIG.name, yaml.safe_load(SERVE_CONFIG.read_text())))
    return configs


def test_serve_configs_match_serve_deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    for name, config in _serve_configs():
        schema = ServeDeploySchema.model_validate(config)
        assert schema.applications, name


def test_serve_schema_check_rejects_a_broken_config():
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    config = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])
    config["applications"][0].pop("import_path")
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(config)


def test_every_serve_config_builds_its_application():
    """Each import_path imports, its builder accepts the config's ``args``, and every deployment
    the config overrides exists in the built app (what `serve deploy` checks, without Ray)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    for name, config in _serve_configs():
        for app in config["applications"]:
            target = import_attr(app["import_path"])
            built = build_app(
                call_user_app_builder_with_args_if_necessary(target, app.get("args") or {}),
                name=app["name"],
            )
            have = {d.name for d in built.deployments}
            for dep in app.get("deployments", []):
                assert dep["name"] in have, (name, dep["name"], have)


def test_rayservice_matches_the_packaged_serve_config():
    """The RayService serves the same application as `serve run georay/serve/serve_config.yaml`,
    with cluster-sized deployments (GPU replicas) instead of laptop-sized ones."""
    ours = yaml.safe_load(_rayservice()["spec"]["serveConfigV2"])["applications"]
    theirs = yaml.safe_load(SERVE_CONFIG.read_text())["applications"]
    assert [a["import_path"] for a in ours] == [a["import_path"] for a in theirs]
    names = {d["name"] for a in theirs for d in a.get("deployments", [])}
    for app in ours:
        for dep in app.get("deployments", []):
            assert not names or dep["name"] in names, dep["name"]
            batch = (app.get("args") or {}).get("batch_size", 8)  # ServeConfig's default
            if "max_ongoing_requests" in dep:
                # @serve.batch never exceeds max_ongoing_requests (DESIGN, toolchain facts).
                assert dep["max_ongoing_requests"] >= batch


# ---------------------------------------------------------------- image, jobs, runtime env


def test_dockerfile_builds_on_the_ray_image_of_our_ray_version():
    text = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^ARG RAY_IMAGE=(\S+)$", text, re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py3{sys.version_info.minor}")
    assert re.search(r"^FROM \$\{RAY_IMAGE\}$", text, re.M)
    sources = re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M)
    copied = [s for line in sources for s in line.split()]
    assert {"pyproject.toml", "georay", "jobs"} <= set(copied)
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
    for src in copied:
        assert (REPO / src).exists(), src
        assert f"!{src}" in ignore or f"!{src}/" in ignore, f"{src} is excluded from the context"


@pytest.mark.parametrize("stage", JOBS)
def test_job_entrypoint_hands_its_arguments_to_the_georay_cli(stage, monkeypatch, capsys):
    from georay.cli import build_parser

    parser = build_parser()
    assert stage in parser._subparsers._group_actions[0].choices, stage
    monkeypatch.setattr(sys, "argv", [f"jobs/{stage}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "jobs" / f"{stage}.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert f"usage: georay {stage}" in capsys.readouterr().out


def test_runtime_env_installs_nothing_and_is_valid():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    # Dependencies come from the image / the cluster's venv: a job must not pip-install torch.
    assert not {"pip", "uv", "conda", "container", "image_uri"} & set(env)
    RuntimeEnv(**env)  # raises on unknown or malformed fields
    assert ".git" in env["excludes"]


# ---------------------------------------------------------------- cluster/README.md commands


def _readme_commands() -> list[list[str]]:
    """Shell commands of cluster/README.md's bash blocks (continuations joined, comments cut)."""
    text = (CLUSTER / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in re.split(r"&&|\|", line):
                if part.strip():
                    commands.append(shlex.split(part.replace("$W", "/w")))
    return commands


def test_readme_job_commands_parse_with_the_georay_cli():
    from georay.cli import build_parser

    parser = build_parser()
    registered = set(parser._subparsers._group_actions[0].choices)
    jobs = [c for c in _readme_commands() if c[:3] == ["ray", "job", "submit"]]
    assert len(jobs) >= 6
    missing = set()
    for cmd in jobs:
        entry = cmd[cmd.index("--") + 1 :]
        assert entry[0] == "python" and entry[1].startswith("jobs/"), cmd
        assert (REPO / entry[1]).is_file(), entry[1]
        stage = Path(entry[1]).stem
        if stage not in registered:
            missing.add(stage)
            continue
        assert parser.parse_args([stage, *entry[2:]]).command, cmd
    assert not missing, f"jobs for commands georay does not have: {sorted(missing)}"


def test_readme_ray_commands_use_real_ray_cli_flags():
    from ray.scripts.scripts import cli

    checked = 0
    for cmd in _readme_commands():
        if cmd[0] != "ray":
            continue
        command, words = cli, cmd[1:]
        while words and hasattr(command, "commands") and words[0] in command.commands:
            command, words = command.commands[words[0]], words[1:]
        assert not hasattr(command, "commands"), f"unknown ray subcommand in {cmd}"
        if "--" in words:
            words = words[: words.index("--")]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in words:
            flag = word.split("=", 1)[0]
            if flag.startswith("-"):
                assert flag in known, f"`ray {command.name}` has no {flag}"
        checked += 1
    assert checked >= 10

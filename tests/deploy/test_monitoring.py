"""deploy.sh's monitoring: a Log Analytics workspace and an action group (the Azure CLI's core commands), then one
ARM deployment (scripts/monitoring/template.json) for a workspace-based Application Insights, the four alert
rules and the workbook; the connection string wired to the app from a private file. Both plans, idempotent,
validated before any change, listed by --dry-run, removed by --destroy; against the stand-in az (fake_az.py,
fake_arm.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.harness import MONITORING, ROOT, Result, assert_no_secret, mutations

TEMPLATE = ROOT / "scripts" / "monitoring" / "template.json"
WEBHOOK = "https://hooks.example.com/services/T000/B000/Zx9Secret8Token7"
EMAILS = "ops@example.com,oncall@example.com"
RECEIVERS = ("--alert-email", EMAILS, "--alert-webhook", WEBHOOK)
SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"


def by_kind(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [v for v in state["resources"].values() if v["kind"] == kind]


def settings(state: dict[str, Any]) -> dict[str, str]:
    [app] = by_kind(state, "app")
    return {s["name"]: s["value"] for s in app["settings"]}


def assert_nothing_leaks(r: Result, *values: str) -> None:
    assert_no_secret(r)
    for value in values:
        assert value not in r.out
        assert all(value not in arg for call in r.calls for arg in call), value


@pytest.mark.parametrize("plan", ["flex", "premium"])
def test_a_first_run_provisions_the_monitoring_and_wires_it_to_the_app(azure, plan: str) -> None:
    r = azure("--plan", plan, *RECEIVERS, "--dead-letter-threshold", "25")
    assert r.code == 0, r.out
    steps = mutations(r.calls)
    assert steps[steps.index("keyvault secret set") + 5 :][:3] == MONITORING  # before the app, which needs it
    state = azure.state()
    [workspace] = by_kind(state, "workspace")
    [component] = by_kind(state, "component")  # ours only: the CLI made no component of its own
    [group] = by_kind(state, "actiongroup")
    alerts = by_kind(state, "alert")
    [workbook] = by_kind(state, "workbook")
    deployment = workspace["tags"]["deployment"]
    assert workspace["sku"] == "PerGB2018"
    assert component["name"] == f"{deployment}-ai" and component["properties"]["WorkspaceResourceId"] == workspace["id"]
    assert sorted(a["name"] for a in alerts) == sorted(
        f"{deployment}-{n}" for n in ("settlement-lag", "dead-letters", "failed-batches", "no-settlement")
    )
    assert all(x["tags"] == {"managed-by": "trade-settlement-deploy", "deployment": deployment} for x in [*alerts])
    assert len(workbook["name"]) == 36 and workbook["name"].count("-") == 4  # a GUID, stable across runs
    assert json.loads(workbook["properties"]["serializedData"])["items"]
    # the receivers: both addresses, and the webhook read from its private file by the CLI, never an argument
    assert group["receivers"] == [
        ["email", "email-1", "ops@example.com", "usecommonalertschema"],
        ["email", "email-2", "oncall@example.com", "usecommonalertschema"],
        ["webhook", "webhook", WEBHOOK, "usecommonalertschema"],
    ]
    assert "webhook https://hooks.example.com/..." in r.out
    # the connection string is the component's, set from a private file; the worker configures the distro
    values = settings(state)
    connection = component["properties"]["ConnectionString"]
    assert values["APPLICATIONINSIGHTS_CONNECTION_STRING"] == connection
    assert values["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert values["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == "settlement"
    create = next(c for c in r.calls if c[:2] == ["functionapp", "create"])
    assert create[create.index("--disable-app-insights") + 1] == "true"
    [deploy] = [c for c in r.calls if c[:3] == ["deployment", "group", "create"]]
    assert "deadLetterThreshold=25" in deploy and f"actionGroupId={group['id']}" in deploy
    assert_nothing_leaks(r, WEBHOOK, "Zx9Secret8Token7", connection)


@pytest.mark.parametrize("plan", ["flex", "premium"])
def test_a_second_run_changes_no_monitoring(azure, plan: str) -> None:
    assert azure("--plan", plan, *RECEIVERS).code == 0
    again = azure("--plan", plan, *RECEIVERS)
    assert again.code == 0, again.out
    assert mutations(again.calls) == []
    assert "monitoring matches" in again.out and "action group tradesettle-" in again.out


def test_changed_receivers_replace_the_action_group_and_a_changed_threshold_redeploys_only_the_template(
    azure,
) -> None:
    assert azure(*RECEIVERS).code == 0
    r = azure("--alert-email", "ops@example.com")
    assert r.code == 0, r.out
    assert mutations(r.calls) == ["monitor action-group create"]
    [group] = by_kind(azure.state(), "actiongroup")
    assert group["receivers"] == [["email", "email-1", "ops@example.com", "usecommonalertschema"]]
    r = azure("--alert-email", "ops@example.com", "--dead-letter-threshold", "7")
    assert mutations(r.calls) == ["deployment group create"]
    assert azure.state()["deployments"]  # the record whose digest the next run compares


@pytest.mark.parametrize("plan", ["flex", "premium"])
def test_a_dry_run_lists_the_whole_monitoring_and_changes_nothing(azure, plan: str) -> None:
    r = azure("--plan", plan, *RECEIVERS, "--dry-run")
    assert r.code == 0, r.out
    assert [c[:2] for c in r.calls] == [["account", "show"]]
    for line in (
        "==> would create Log Analytics workspace tradesettle-",
        "==> would create action group tradesettle-",
        "==> would deploy monitoring: Application Insights tradesettle-",
        "-settlement-lag",
        "-dead-letters",
        "-failed-batches",
        "-no-settlement",
        ", workbook ",
        "[dry-run] az monitor log-analytics workspace create",
        "[dry-run] az monitor action-group create",
        "[dry-run] az deployment group create",
        "--template-file " + str(TEMPLATE),
        "APPLICATIONINSIGHTS_CONNECTION_STRING=@",
    ):
        assert line in r.out, line
    assert_nothing_leaks(r, WEBHOOK, "Zx9Secret8Token7")


def test_the_template_gets_exactly_its_parameters(azure) -> None:
    """Every parameter deploy.sh passes is one the template declares, and every one without a default is
    passed (the stand-in refuses otherwise too, as the CLI and ARM do); the types are the declared ones."""
    assert azure(*RECEIVERS).code == 0
    [deploy] = [c for c in azure.state()["deployments"].values()]
    given = deploy["properties"]["parameters"]
    declared = json.loads(TEMPLATE.read_text())["parameters"]
    assert set(given) == set(declared)
    required = {k for k, d in declared.items() if "defaultValue" not in d}
    [argv] = [c for c in _calls(azure) if c[:3] == ["deployment", "group", "create"]]
    passed = {a.split("=", 1)[0] for a in argv[argv.index("--parameters") + 1 : argv.index("--no-prompt")]}
    assert required <= passed <= set(declared)
    assert given["tags"]["value"] == {
        "managed-by": "trade-settlement-deploy",
        "deployment": given["tags"]["value"]["deployment"],
    }
    assert given["deadLetterThreshold"]["value"] == 100 and given["lagSecondsThreshold"]["value"] == 60


def _calls(azure: Any) -> list[list[str]]:
    r = azure(*RECEIVERS, "--dead-letter-threshold", "99")  # a change, so that the deployment runs again
    return r.calls


def _seed(tmp_path: Path, *resources: dict[str, Any]) -> None:
    state_path = tmp_path / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"resources": {}}
    for res in resources:
        state["resources"][f"{res['kind']}:{res['name']}"] = res
    state_path.write_text(json.dumps(state))


def _theirs(kind: str, provider: str, name: str) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/shared-mon/providers/{provider}/{name}",
        "name": name,
        "kind": kind,
        "group": "shared-mon",
        "tags": {"owner": "platform-team"},
        "properties": {"ConnectionString": "InstrumentationKey=theirs-Ab12Cd34"},
    }


def test_an_existing_application_insights_is_reused_and_never_destroyed(azure, tmp_path: Path) -> None:
    theirs = _theirs("component", "Microsoft.Insights/components", "platform-ai")
    _seed(tmp_path, theirs)
    r = azure(*RECEIVERS, "--app-insights-id", theirs["id"])
    assert r.code == 0, r.out
    assert "monitor log-analytics workspace create" not in mutations(r.calls)
    state = azure.state()
    assert [c["name"] for c in by_kind(state, "component")] == ["platform-ai"]
    assert not by_kind(state, "workspace") and len(by_kind(state, "alert")) == 4
    assert settings(state)["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "InstrumentationKey=theirs-Ab12Cd34"
    assert "reusing platform-ai" in r.out
    assert_nothing_leaks(r, "theirs-Ab12Cd34")
    assert azure("--destroy").code == 0
    assert [c["name"] for c in by_kind(azure.state(), "component")] == ["platform-ai"]


def test_an_existing_workspace_is_reused_for_a_new_application_insights(azure, tmp_path: Path) -> None:
    theirs = _theirs("workspace", "Microsoft.OperationalInsights/workspaces", "platform-law")
    _seed(tmp_path, theirs)
    r = azure("--workspace-id", theirs["id"])
    assert r.code == 0, r.out
    assert mutations(r.calls)[9:11] == ["monitor action-group create", "deployment group create"]
    [component] = by_kind(azure.state(), "component")
    assert component["properties"]["WorkspaceResourceId"] == theirs["id"]
    assert "no --alert-email or --alert-webhook: the alerts notify nobody" in r.out


def test_a_reused_resource_that_does_not_exist_is_refused_before_any_change(azure) -> None:
    missing = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/x/providers/Microsoft.Insights/components/nope"
    r = azure("--app-insights-id", missing)
    assert r.code == 1 and "--app-insights-id: no such Application Insights component" in r.out
    assert mutations(r.calls) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--alert-email", "ops@example.com,not-an-address"), "--alert-email must be e-mail addresses"),
        (("--alert-webhook", "http://hooks.example.com/x"), "--alert-webhook must be an https:// URL"),
        (("--alert-webhook", "https://hooks.example.com/<token>"), "--alert-webhook is still a placeholder"),
        (("--dead-letter-threshold", "-1"), "--dead-letter-threshold must be a whole number"),
        (("--workspace-id", "platform-law"), "--workspace-id must be a Log Analytics workspace's resource id"),
        (("--app-insights-id", "/subscriptions/x/ai"), "--app-insights-id must be an Application Insights"),
        (
            (
                "--workspace-id",
                f"/subscriptions/{SUBSCRIPTION}/resourceGroups/g/providers/Microsoft.OperationalInsights/workspaces/w",
                "--app-insights-id",
                f"/subscriptions/{SUBSCRIPTION}/resourceGroups/g/providers/Microsoft.Insights/components/c",
            ),
            "--workspace-id has no use with --app-insights-id",
        ),
    ],
)
def test_bad_monitoring_options_are_refused_before_azure_is_asked_anything(azure, args, message) -> None:
    r = azure(*args)
    assert r.code == 1 and message in r.out, r.out
    assert r.calls == []
    assert "Zx9Secret8Token7" not in r.out


def test_the_monitoring_options_come_from_a_config_file_too(azure, tmp_path: Path) -> None:
    config = tmp_path / "deploy.conf"
    config.write_text(f"ALERT_EMAIL={EMAILS}\nDEAD_LETTER_THRESHOLD=12\n")
    r = azure("--config", str(config))
    assert r.code == 0, r.out
    [deploy] = azure.state()["deployments"].values()
    assert deploy["properties"]["parameters"]["deadLetterThreshold"]["value"] == 12


def test_the_stand_in_refuses_template_parameters_the_cli_and_arm_refuse(azure) -> None:
    assert azure().code == 0
    group = by_kind(azure.state(), "group")[0]["name"]

    def deploy(*params: str, prompt: bool = False) -> subprocess.CompletedProcess[str]:
        argv = ["az", "deployment", "group", "create", "--resource-group", group, "--name", "t"]
        argv += ["--template-file", str(TEMPLATE)]
        argv += ["--parameters", *params] + ([] if prompt else ["--no-prompt", "true"])
        return subprocess.run(argv, env=azure.env, capture_output=True, text=True)

    unknown = deploy("alertName=x")
    assert unknown.returncode == 1 and "unrecognized template parameter 'alertName'" in unknown.stderr
    missing = deploy("location=westeurope", prompt=True)
    assert missing.returncode == 1 and "Missing input parameters: actionGroupId" in missing.stderr
    not_int = deploy("deadLetterThreshold=many")
    assert not_int.returncode == 1 and "invalid literal for int()" in not_int.stderr
    not_provided = deploy("location=westeurope")
    assert not_provided.returncode == 1 and "is not provided" in not_provided.stderr


def test_the_runbook_says_for_each_alert_what_it_means_and_what_to_do() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    runbook = text[text.index("\n## Alerts\n") : text.index("\n## Retries and the poll interval")]
    template = json.loads(TEMPLATE.read_text())
    rules = [r for r in template["resources"] if r["type"] == "Microsoft.Insights/scheduledQueryRules"]
    entries = runbook.split("\n**")[1:]
    assert len(entries) == len(rules) == 4
    for rule in rules:
        assert "docs/operations.md#alerts" in rule["properties"]["description"]
        query = rule["properties"]["criteria"]["allOf"][0]["query"]
        watched = set(re.findall(r"settlement\.[a-z_.]*[a-z_]", query))
        [entry] = [e for e in entries if watched <= set(re.findall(r"settlement\.[a-z_.]*[a-z_]", e.split("\n")[0]))]
        assert entry.count("\n- ") >= 2, entry[:80]  # what it means, then at least two things to do
    for action in ("*redrive*", "*repair*", "*scale*", "*registry*"):
        assert action in runbook, action

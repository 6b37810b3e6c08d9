"""scripts/deploy.sh against stand-in `az` and `func` executables that record argv and answer like Azure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.harness import MONITORING, PASSWORD, ROOT, assert_no_secret, mutations


def test_premium_first_run_creates_everything_in_order(azure) -> None:
    r = azure("--plan", "premium")
    assert r.code == 0, r.out
    assert mutations(r.calls) == [
        "group create",
        "storage account create",
        "keyvault create",
        "role assignment create",
        *["keyvault secret set"] * 5,
        *MONITORING,
        "functionapp plan create",
        "functionapp create",
        "role assignment create",
        "functionapp config appsettings set",
        "resource update",
        # the app identity's role had not reached the vault when the settings were set: restarted once it had
        "functionapp restart",
        "func azure functionapp publish",
        "resource tag",
    ]
    call = {" ".join(c[:3]): c for c in r.calls}
    assert {"--enable-rbac-authorization", "true"} <= set(call["keyvault create --name"])
    plan = call["functionapp plan create"]
    assert plan[plan.index("--sku") + 1] == "EP1" and plan[plan.index("--max-burst") + 1] == "20"
    assert plan[plan.index("--is-linux") + 1] == "true"
    app = call["functionapp create --name"]
    for flag, value in (
        ("--runtime", "python"),
        ("--runtime-version", "3.13"),  # the deploy default (scripts/pythons.sh)
        ("--functions-version", "4"),
        ("--assign-identity", "[system]"),
    ):
        assert app[app.index(flag) + 1] == value
    roles = azure.state()["roles"]
    assert {(r["role"], r["principal"]) for r in roles} == {
        ("Key Vault Secrets Officer", "11111111-2222-3333-4444-555555555555"),
        (
            "Key Vault Secrets User",
            next(v["principalId"] for v in azure.state()["resources"].values() if v["kind"] == "app"),
        ),
    }
    update = call["resource update --resource-group"]
    assert update[update.index("--set") + 1] == "properties.functionsRuntimeScaleMonitoringEnabled=1"
    assert update[update.index("--resource-type") + 1] == "Microsoft.Web/sites"
    assert update[update.index("--name") + 1].endswith("-func/config/web")
    assert call["func azure functionapp"][:4] == ["func", "azure", "functionapp", "publish"]
    assert "--build" in call["func azure functionapp"] and "remote" in call["func azure functionapp"]
    assert_no_secret(r)


def test_app_settings_are_key_vault_references(azure) -> None:
    assert azure().code == 0
    app = next(v for v in azure.state()["resources"].values() if v["kind"] == "app")
    settings = {s["name"]: s["value"] for s in app["settings"]}
    vault = next(v["name"] for v in azure.state()["resources"].values() if v["kind"] == "vault")
    assert settings["KAFKA_SASL_PASSWORD"] == (
        f"@Microsoft.KeyVault(SecretUri=https://{vault}.vault.azure.net/secrets/kafka-sasl-password/)"
    )
    assert settings["SCHEMA_REGISTRY_CONFIG"].startswith("@Microsoft.KeyVault(")
    assert settings["KAFKA_TRIGGER_PROTOCOL"] == "SaslSsl"
    assert azure.state()["secrets"]["kafka-sasl-password"] == PASSWORD  # stored from the file, never an argument


def test_second_run_changes_nothing(azure) -> None:
    assert azure().code == 0
    again = azure()
    assert again.code == 0, again.out
    assert mutations(again.calls) == []
    assert "code" in again.out and "already published" in again.out
    assert_no_secret(again)


def test_a_changed_setting_changes_only_that(azure) -> None:
    assert azure("--plan", "premium").code == 0
    r = azure("--plan", "premium", "--max-burst", "15", "--lag-threshold", "500")
    assert mutations(r.calls) == ["functionapp plan update", "functionapp config appsettings set"]
    setting_call = next(c for c in r.calls if c[:4] == ["functionapp", "config", "appsettings", "set"])
    assert "KAFKA_LAG_THRESHOLD=500" in setting_call and not any("KeyVault" in a for a in setting_call)


def test_the_repair_schedule_is_an_app_setting(azure) -> None:
    first = azure()
    assert first.code == 0
    settings = next(c for c in first.calls if c[:4] == ["functionapp", "config", "appsettings", "set"])
    assert "SETTLEMENT_REPAIR_SCHEDULE=*/10 * * * * *" in settings  # the app's own default, stated
    r = azure("--repair-schedule", "*/30 * * * * *")
    assert mutations(r.calls) == ["functionapp config appsettings set"]
    setting_call = next(c for c in r.calls if c[:4] == ["functionapp", "config", "appsettings", "set"])
    assert "SETTLEMENT_REPAIR_SCHEDULE=*/30 * * * * *" in setting_call
    refused = azure("--repair-schedule", "every minute")
    assert refused.code != 0 and "--repair-schedule must be an NCRONTAB schedule" in refused.out
    assert refused.calls == []


def test_a_failing_az_call_stops_with_a_clear_message(azure) -> None:
    r = azure("--plan", "premium", fail="functionapp plan create")
    assert r.code == 1
    assert "deploy.sh: step 'create Premium plan' failed:" in r.out and "AuthorizationFailed" in r.out
    assert "functionapp create" not in mutations(r.calls)
    assert_no_secret(r)


def test_dry_run_changes_nothing_and_masks_secrets(azure) -> None:
    r = azure("--plan", "premium", "--dry-run")
    assert r.code == 0, r.out
    assert [c[:2] for c in r.calls] == [["account", "show"]]  # the only call: to derive stable names
    assert r.out.count("[dry-run]") >= 13
    assert "[dry-run] az keyvault secret set" in r.out and "--file <private temp file>" in r.out
    assert "[dry-run] az functionapp plan create" in r.out
    assert_no_secret(r)


def test_destroy_deletes_the_group_it_created(azure) -> None:
    assert azure().code == 0
    r = azure("--destroy")
    assert r.code == 0, r.out
    assert mutations(r.calls) == ["group delete"]
    assert azure.state()["resources"] == {}


def test_destroy_never_deletes_a_group_it_did_not_create(azure) -> None:
    subprocess.run(
        ["az", "group", "create", "--name", "shared-rg", "--location", "westeurope", "--tags", "owner=someone-else"],
        env=azure.env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "az",
            "storage",
            "account",
            "create",
            "--name",
            "theirs",
            "--resource-group",
            "shared-rg",
            "--tags",
            "owner=someone-else",
        ],
        env=azure.env,
        check=True,
        capture_output=True,
    )
    assert azure("--resource-group", "shared-rg").code == 0
    r = azure("--resource-group", "shared-rg", "--destroy")
    assert r.code == 0, r.out
    # the app and the rest first, then its plan (a plan with an app on it cannot be deleted), then the record of
    # the monitoring deployment (a later run would otherwise take its digest for resources that are gone)
    assert mutations(r.calls) == ["resource delete", "resource delete", "deployment group delete"]
    deletes = [c for c in r.calls if c[:2] == ["resource", "delete"]]
    assert all("/serverFarms/" in i for i in deletes[-1][deletes[-1].index("--ids") + 1 :])
    first = deletes[0][deletes[0].index("--ids") + 1 :]
    for kind in ("workspaces/", "actionGroups/", "components/", "scheduledQueryRules/", "workbooks/"):
        assert any(kind in i for i in first), kind
    left = {v["name"] for v in azure.state()["resources"].values()}
    assert left == {"shared-rg", "theirs"}
    again = azure("--resource-group", "shared-rg")
    assert again.code == 0 and "deployment group create" in mutations(again.calls)


def test_destroy_then_deploy_recovers_the_soft_deleted_vault(azure) -> None:
    assert azure().code == 0
    assert azure("--destroy").code == 0
    r = azure()
    assert r.code == 0, r.out
    assert "keyvault recover" in mutations(r.calls) and "keyvault create" not in mutations(r.calls)
    assert azure.state()["secrets"]["kafka-sasl-password"] == PASSWORD


def test_a_service_principal_login_deploys_without_graph(azure) -> None:
    r = azure(env={"FAKE_AZ_LOGIN": "servicePrincipal"})
    assert r.code == 0, r.out
    officer = [x for x in azure.state()["roles"] if x["role"] == "Key Vault Secrets Officer"]
    assert [(x["principal"], x["type"]) for x in officer] == [
        ("99999999-8888-7777-6666-555555555555", "ServicePrincipal")
    ]
    assert not any(c[:2] == ["ad", "signed-in-user"] for c in r.calls)
    assert not any("--assignee" in c for c in r.calls)  # Graph would not see a just-created identity


def test_an_az_warning_on_stderr_never_becomes_part_of_an_answer(azure) -> None:
    group, storage = "tradesettle-x1y2z3-rg", "tradesettlex1y2z3st"
    for argv in (
        ["group", "create", "--name", group, "--location", "westeurope"],
        ["storage", "account", "create", "--name", storage, "--resource-group", group],
        # an app that exists without an identity: deploy.sh assigns one, az warns on stderr
        [
            "functionapp",
            "create",
            "--name",
            "tradesettle-x1y2z3-func",
            "--resource-group",
            group,
            "--storage-account",
            storage,
            "--flexconsumption-location",
            "westeurope",
            "--runtime",
            "python",
            "--runtime-version",
            "3.13",
        ],
    ):
        subprocess.run(["az", *argv], env=azure.env, check=True, capture_output=True)
    r = azure("--suffix", "x1y2z3")
    assert r.code == 0, r.out
    users = [x["principal"] for x in azure.state()["roles"] if x["role"] == "Key Vault Secrets User"]
    assert users == ["principal-of-tradesettle-x1y2z3-func"]


def test_a_rerun_restarts_an_app_whose_references_a_previous_run_left_unresolved(azure, tmp_path: Path) -> None:
    assert azure().code == 0
    state = azure.state()
    app = next(v for v in state["resources"].values() if v["kind"] == "app")
    app["refsResolved"] = False
    (tmp_path / "state.json").write_text(json.dumps(state))
    r = azure()
    assert r.code == 0, r.out
    assert mutations(r.calls) == ["functionapp restart"]
    assert "Key Vault references resolved" in r.out


def test_secrets_file_lines_are_never_echoed(azure, tmp_path: Path) -> None:
    bad = tmp_path / "bad.secrets"
    bad.write_text('KAFKA_PRODUCER_CONFIG={\n  "sasl.jaas.config": "pw=Zt5Hidden9Kq"\n}\n')
    r = azure("--secrets-file", str(bad))
    assert r.code == 1
    assert "line 2 is not KEY=VALUE on one line (the line is not shown)" in r.out
    assert "Zt5Hidden9Kq" not in r.out and "sasl.jaas.config" not in r.out


def test_help_and_bad_flags() -> None:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "deploy.sh"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--destroy" in out.stdout and "bills at least one instance" in out.stdout
    bad = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--plan", "premium", "--sku", "Y1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "--sku must be EP1, EP2 or EP3" in bad.stderr
    burst = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--plan", "premium", "--max-burst", "30"],
        capture_output=True,
        text=True,
    )
    assert burst.returncode == 1 and "--max-burst must be 1..20" in burst.stderr


def test_shellcheck_is_clean() -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    scripts = [*sorted(str(p) for p in (ROOT / "scripts").glob("*.sh")), str(ROOT / ".ci" / "run")]
    result = subprocess.run([str(shellcheck), *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_names_and_region_from_a_config_file_with_flags_winning(azure, tmp_path: Path) -> None:
    config = tmp_path / "deploy.conf"
    config.write_text(
        "# my deployment\nPREFIX=acme\nLOCATION=northeurope\nSUFFIX=abc123\nHOSTING_PLAN=premium\nMAX_BURST=7\n"
    )
    r = azure("--config", str(config), "--max-burst", "9")
    assert r.code == 0, r.out
    group = next(c for c in r.calls if c[:2] == ["group", "create"])
    assert group[group.index("--name") + 1] == "acme-abc123-rg"
    assert group[group.index("--location") + 1] == "northeurope"
    plan = next(c for c in r.calls if c[:3] == ["functionapp", "plan", "create"])
    assert plan[plan.index("--max-burst") + 1] == "9"


def test_secrets_can_come_from_stdin(azure, tmp_path: Path) -> None:
    secrets = (tmp_path / "deploy.secrets").read_text()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--secrets-file", "-", "--schema-registry-url", "https://sr"],
        env=azure.env,
        input=secrets,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert azure.state()["secrets"]["kafka-sasl-password"] == PASSWORD
    assert PASSWORD not in proc.stdout + proc.stderr


def test_funcignore_keeps_secrets_and_tooling_out_of_the_package() -> None:
    ignored = set((ROOT / ".funcignore").read_text().split())
    assert {"deploy.secrets", "local.settings.json", "tests/", "bench/", "localrun/", "devstack/", ".venv/"} <= ignored


# ---- Flex Consumption, the entry path, validation, next steps -------------------------------------------------


def _app(state: dict) -> dict:  # type: ignore[type-arg]
    return next(v for v in state["resources"].values() if v["kind"] == "app")


def test_flex_first_run_creates_everything_in_order(azure) -> None:
    r = azure()
    assert r.code == 0, r.out
    assert mutations(r.calls) == [
        "group create",
        "storage account create",
        "keyvault create",
        "role assignment create",
        *["keyvault secret set"] * 5,
        *MONITORING,
        "functionapp create",  # no plan create: the CLI makes the Flex plan with the app
        "role assignment create",
        "resource tag",  # the Flex plan, so that --destroy finds it
        "functionapp config appsettings set",  # the role had reached the vault by then: no restart needed
        "func azure functionapp publish",
        "resource tag",
    ]
    create = next(c for c in r.calls if c[:2] == ["functionapp", "create"])
    for flag, value in (
        ("--flexconsumption-location", "westeurope"),
        ("--runtime", "python"),
        ("--runtime-version", "3.13"),  # the deploy default (scripts/pythons.sh)
        ("--instance-memory", "2048"),
        ("--maximum-instance-count", "40"),
        ("--always-ready-instances", "function:settle_user_trades=1"),
        ("--deployment-storage-auth-type", "SystemAssignedIdentity"),
        ("--assign-identity", "[system]"),
    ):
        assert create[create.index(flag) + 1] == value
    assert "--plan" not in create and "--functions-version" not in create
    assert not any(c[:2] == ["resource", "update"] for c in r.calls)  # runtime scale monitoring is Premium's
    state = azure.state()
    app = _app(state)
    assert app["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"] == [
        {"name": "function:settle_user_trades", "instanceCount": 1}
    ]
    settings = {s["name"]: s["value"] for s in app["settings"]}
    assert settings["AzureWebJobs.settle_sink_batch.Disabled"] == "true"
    assert settings["AzureWebJobs.settle_user_trades.Disabled"] == "false"
    plan = next(v for v in state["resources"].values() if v["kind"] == "plan")
    assert plan["sku"] == "FC1" and plan["tags"]["deployment"].startswith("tradesettle-")
    # the next step: the real host name (Flex's differs from <app>.azurewebsites.net), the key's command, ksql_apply
    assert f"https://{app['defaultHostName']}/api/settle" in r.out
    assert (
        "az functionapp function keys list --name tradesettle-" in r.out
        and "--function-name settle_sink_batch" in r.out
    )
    assert "scripts/ksql_apply.py --server https://<ksqldb-endpoint>" in r.out and "--entry trigger" in r.out
    assert "export FUNCTION_KEY" not in r.out  # only the connector path needs the key
    assert "--transactional-id trade-settlement.settled. --prefix" in r.out
    assert_no_secret(r)


def test_flex_second_run_changes_nothing(azure) -> None:
    assert azure().code == 0
    again = azure()
    assert again.code == 0, again.out
    assert mutations(again.calls) == []
    assert "app settings match" in again.out and "already published" in again.out


def test_flex_changed_scale_and_entry_change_only_those(azure) -> None:
    assert azure().code == 0
    r = azure("--max-instances", "12", "--entry", "connector")
    assert r.code == 0, r.out
    assert mutations(r.calls) == [
        "functionapp config appsettings set",
        "functionapp scale config set",
        "functionapp scale config always-ready set",  # http=1
        "functionapp scale config always-ready delete",  # function:settle_user_trades
    ]
    app = _app(azure.state())
    settings = {s["name"]: s["value"] for s in app["settings"]}
    assert settings["AzureWebJobs.settle_user_trades.Disabled"] == "true"
    assert settings["AzureWebJobs.settle_sink_batch.Disabled"] == "false"
    scale = app["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] == 12 and scale["alwaysReady"] == [{"name": "http", "instanceCount": 1}]
    assert "export FUNCTION_URL=https://" in r.out and "--entry connector" in r.out
    assert 'export FUNCTION_KEY="$(az functionapp function keys list' in r.out


def test_flex_always_ready_zero_removes_it(azure) -> None:
    assert azure().code == 0
    r = azure("--always-ready", "0")
    assert r.code == 0, r.out
    assert mutations(r.calls) == ["functionapp scale config always-ready delete"]
    assert _app(azure.state())["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"] == []


def test_flex_repairs_deployment_storage_that_uses_a_connection_string(azure, tmp_path: Path) -> None:
    assert azure().code == 0
    state = azure.state()
    _app(state)["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] = (
        "StorageAccountConnectionString"
    )
    (tmp_path / "state.json").write_text(json.dumps(state))
    r = azure()
    assert mutations(r.calls) == ["functionapp deployment config set"]
    assert _app(azure.state())["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"] == (
        "SystemAssignedIdentity"
    )


def test_flex_dry_run_reads_only_the_subscription_and_says_would(azure) -> None:
    r = azure("--dry-run")
    assert r.code == 0, r.out
    assert [c[:2] for c in r.calls] == [["account", "show"]]
    assert "==> would create resource group" in r.out and "==> would publish" in r.out
    assert "[dry-run] az functionapp create" in r.out and "--flexconsumption-location westeurope" in r.out
    assert " created" not in r.out and "==> published" not in r.out
    assert "dry run: nothing was changed" in r.out
    assert_no_secret(r)


def test_premium_dry_run_says_would_too(azure) -> None:
    r = azure("--plan", "premium", "--dry-run")
    assert r.code == 0, r.out
    assert "==> would create plan" in r.out and "==> would enable runtime scale monitoring" in r.out
    assert " created" not in r.out and "==> published" not in r.out


def test_premium_destroy_deletes_the_group(azure) -> None:
    assert azure("--plan", "premium").code == 0
    r = azure("--plan", "premium", "--destroy")
    assert r.code == 0, r.out
    assert mutations(r.calls) == ["group delete"]
    assert azure.state()["resources"] == {}


def test_a_flex_run_refuses_an_app_on_the_premium_plan(azure) -> None:
    assert azure("--plan", "premium").code == 0
    r = azure()
    assert r.code == 1 and "runs on the Elastic Premium plan" in r.out
    assert mutations(r.calls) == []


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.secrets"
    path.write_text(text)
    return str(path)


GOOD = (
    "KAFKA_BOOTSTRAP_SERVERS=pkc-123.westeurope.azure.confluent.cloud:9092\n"
    "KAFKA_SASL_USERNAME=APIKEY123\n"
    f"KAFKA_SASL_PASSWORD={PASSWORD}\n"
)


@pytest.mark.parametrize(
    ("args", "secrets", "message"),
    [
        (["--prefix"], None, "--prefix needs a value"),
        (["--prefix", "--dry-run"], None, "--prefix needs a value"),
        (["--plan", "consumption"], None, "--plan must be flex or premium"),
        (["--entry", "both"], None, "--entry must be trigger or connector"),
        (["--instance-memory", "1024"], None, "--instance-memory must be 512, 2048 or 4096"),
        (["--max-instances", "0"], None, "--max-instances must be 1..1000"),
        (["--always-ready", "50"], None, "--always-ready must be a whole number from 0 to --max-instances (40)"),
        (["--sku", "EP2"], None, "--sku applies to --plan premium only"),
        (["--plan", "premium", "--always-ready", "1"], None, "--always-ready applies to --plan flex only"),
        (["--schema-registry-url", "https://psrc-xxxxx.westeurope.azure.confluent.cloud"], None, "placeholder"),
        (["--schema-registry-url", "psrc-1.confluent.cloud"], None, "must be an http(s) URL"),
        (["--lag-threshold", "0"], None, "--lag-threshold must be a whole number above 0"),
        (["--python-version", "3.10"], None, "--python-version must be one of 3.11 3.12 3.13 3.14 on --plan flex"),
        (["--plan", "premium", "--python-version", "3.9"], None, "--python-version must be one of 3.11 3.12"),
        (["--python-version", "3"], None, "--python-version must be one of"),
        (["--python-version"], None, "--python-version needs a value"),
        ([], "example", "KAFKA_BOOTSTRAP_SERVERS still holds the example's placeholder"),
        ([], GOOD.replace("APIKEY123", "<Confluent Cloud API key>"), "KAFKA_SASL_USERNAME still holds"),
        ([], GOOD + "KAFKA_PRODUCER_CONFIG=\n", "KAFKA_PRODUCER_CONFIG is empty"),
        (
            [],
            GOOD + 'SCHEMA_REGISTRY_CONFIG={"basic.auth.user.info": "<SR API key>:x"}\n',
            "SCHEMA_REGISTRY_CONFIG still",
        ),
        ([], GOOD + "SCHEMA_REGISTRY_CONFIG=basic\n", "SCHEMA_REGISTRY_CONFIG must be a JSON object"),
        ([], GOOD.replace(":9092", ""), "KAFKA_BOOTSTRAP_SERVERS must be host:port"),
        ([], GOOD.replace(f"KAFKA_SASL_PASSWORD={PASSWORD}\n", ""), "KAFKA_SASL_PASSWORD is missing"),
    ],
)
def test_bad_input_is_refused_before_azure_is_asked_anything(azure, tmp_path: Path, args, secrets, message) -> None:
    extra = []
    if secrets == "example":
        extra = ["--secrets-file", str(ROOT / "deploy.secrets.example")]
    elif secrets is not None:
        extra = ["--secrets-file", _write(tmp_path, secrets)]
    r = azure(*extra, *args)
    assert r.code == 1, r.out
    assert message in r.out
    assert r.calls == []  # not even `az account show`: nothing read, nothing created
    assert "parameter null or not set" not in r.out
    assert PASSWORD not in r.out and "APIKEY123" not in r.out and "pkc-123" not in r.out


def test_a_missing_schema_registry_url_is_refused_before_any_change(azure) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--secrets-file", str(ROOT / "deploy.secrets.example")],
        env=azure.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "--schema-registry-url is required" in proc.stderr
    assert not (Path(azure.env["FAKE_AZ_STATE"])).exists()  # the stand-in was never called


def _documented_acl_rows(group: str) -> set[tuple[str, str, str, str]]:
    """(resource, name, pattern, operation) rows of the ACL table in docs/guarantees.md, <group> filled in."""
    text = (ROOT / "docs" / "guarantees.md").read_text()
    table = text[text.index("**Confluent Cloud ACLs**") :].split("\n\n")[1]
    rows = set()
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        resource, names, pattern, operations = cells[0], cells[1], cells[2] or "literal", cells[3]
        ops = [o.strip().lower() for o in re.sub(r"\(.*?\)", "", operations).split(",")]
        for name in [n.strip(" `") for n in names.split(",")] if names else [""]:
            for op in ops:
                op = "idempotent-write" if op == "idempotentwrite" else op
                rows.add((resource, name.replace("<group>", group), pattern, op))
    return rows


def test_printed_acls_are_the_documented_table_plus_the_redrive_tool() -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--print-acls", "--consumer-group", "settle-prod"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    printed = set()
    for line in out.stdout.splitlines():
        if "<function-service-account>" not in line:
            continue
        words = line.split()
        ops = words[words.index("--operations") + 1].split(",")
        kind = words[words.index("--operations") + 2][2:]
        name = "" if kind == "cluster-scope" else words[words.index("--operations") + 3]
        pattern = "prefixed" if "--prefix" in words else "literal"
        resource = {"consumer-group": "group", "cluster-scope": "cluster", "transactional-id": "transactional-id"}.get(
            kind, kind
        )
        for op in ops:
            printed.add((resource, name, pattern, op))
    assert printed == _documented_acl_rows("settle-prod")
    assert (
        "--service-account <redrive-service-account> --operations read,describe --consumer-group dlq-redrive- --prefix"
        in out.stdout
    )


def test_the_stand_in_refuses_what_the_cli_refuses(azure) -> None:
    def az(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["az", *argv], env=azure.env, capture_output=True, text=True)

    both = az(
        "functionapp", "create", "-n", "a", "-g", "g", "-s", "s", "--plan", "p", "--flexconsumption-location", "x"
    )
    assert both.returncode == 2 and "You must specify one of these parameter" in both.stderr
    flex_only = az("functionapp", "create", "-n", "a", "-g", "g", "-s", "s", "--plan", "p", "--instance-memory", "512")
    assert flex_only.returncode == 2 and "must be used with parameter --flexconsumption-location" in flex_only.stderr
    no_value = az("functionapp", "create", "-n", "a", "-g", "g", "-s", "s", "--instance-memory")
    assert no_value.returncode == 2 and "expected one argument" in no_value.stderr
    not_int = az("functionapp", "scale", "config", "set", "-n", "a", "-g", "g", "--maximum-instance-count", "many")
    assert not_int.returncode == 2 and "invalid int value" in not_int.stderr
    unknown = az("functionapp", "scale", "config", "always-ready", "set", "-n", "a", "-g", "g", "--always-ready", "1")
    assert unknown.returncode == 2 and "unrecognized arguments: --always-ready" in unknown.stderr
    required = az("functionapp", "scale", "config", "always-ready", "set", "-n", "a", "-g", "g")
    assert required.returncode == 2 and "the following arguments are required: --settings" in required.stderr
    choice = az("functionapp", "deployment", "config", "set", "-n", "a", "-g", "g", "--dsat", "AccountKey")
    assert choice.returncode == 2 and "invalid choice" in choice.stderr
    assert azure("--plan", "premium").code == 0
    premium_app = next(v["name"] for v in azure.state()["resources"].values() if v["kind"] == "app")
    group = next(v["name"] for v in azure.state()["resources"].values() if v["kind"] == "group")
    on_premium = az("functionapp", "scale", "config", "show", "--name", premium_app, "--resource-group", group)
    assert (
        on_premium.returncode == 1 and "only valid for Azure Functions on the FlexConsumption plan" in on_premium.stderr
    )


@pytest.mark.skipif(not os.environ.get("DEPLOY_REAL_AZ"), reason="set DEPLOY_REAL_AZ to a real Azure CLI (2.91.0)")
def test_every_argv_deploy_sh_makes_parses_with_the_real_cli(azure, tmp_path: Path) -> None:
    """The real CLI, logged out, parses each argv and stops only at the login check (exit 1), never at its
    parser (exit 2): every argument name, value count, choice and type deploy.sh uses is one it accepts."""
    calls: list[list[str]] = []
    receivers = [
        "--alert-email",
        "ops@example.com,oncall@example.com",
        "--alert-webhook",
        "https://hooks.example.com/x",
    ]
    for args in (
        [],
        ["--max-instances", "12", "--entry", "connector", "--always-ready", "2"],
        ["--always-ready", "0"],
        [*receivers, "--dead-letter-threshold", "5"],
        ["--destroy"],
    ):
        r = azure(*args)
        assert r.code == 0, r.out
        calls += r.calls
    for args in ([], ["--max-burst", "15"], receivers, ["--destroy"]):
        r = azure("--plan", "premium", "--resource-group", "shared-rg", *args)
        calls += r.calls
    # Keyless: the first run (stopped for the identity pools), the full one, a rotation.
    keyless = tmp_path / "keyless.secrets"
    keyless.write_text("KAFKA_BOOTSTRAP_SERVERS=pkc-1.westeurope.azure.confluent.cloud:9092\n")
    entra = ["--secrets-file", str(keyless), "--auth", "entra", "--kafka-cluster-id", "lkc-a1", "--registry-cluster-id"]
    entra += ["lsrc-b2", "--prefix", "keyless"]
    pools = ["--identity-pool-id", "pool-A", "--trigger-identity-pool-id", "pool-B"]
    for args in (entra, [*entra, *pools], [*entra, "--rotate-trigger-secret", "--rotation-overlap", "0"]):
        r = azure(*args)
        assert r.code == 0, r.out
        calls += r.calls
    real_env = {**os.environ, "AZURE_CONFIG_DIR": str(tmp_path / "azcfg"), "AZURE_CORE_COLLECT_TELEMETRY": "no"}
    shapes = {tuple(c) for c in calls if c[0] != "func"}
    (tmp_path / "secret-file").write_text("x")  # the CLI opens --file while parsing; deploy.sh's is gone by now
    for shape in sorted(shapes):
        argv = list(shape)
        if "--file" in argv:
            argv[argv.index("--file") + 1] = str(tmp_path / "secret-file")
        proc = subprocess.run([os.environ["DEPLOY_REAL_AZ"], *argv], env=real_env, capture_output=True, text=True)
        assert proc.returncode == 1 and "az login" in proc.stderr, (argv, proc.stderr[-500:])


# The default, 3.13, is the first-run tests' case; 3.12 is the same path as 3.11.
@pytest.mark.parametrize(("plan", "version"), [("flex", "3.11"), ("premium", "3.14")])
def test_another_python_is_deployed_and_an_app_on_it_is_refused_not_changed(azure, plan: str, version: str) -> None:
    first = azure("--plan", plan, "--python-version", version)
    assert first.code == 0, first.out
    [app] = [c for c in first.calls if c[:2] == ["functionapp", "create"]]
    assert app[app.index("--runtime") + 1] == "python" and app[app.index("--runtime-version") + 1] == version
    r = azure("--plan", plan)  # the default, 3.13
    assert r.code == 1 and f"runs Python {version}, not --python-version 3.13" in r.out, r.out
    assert mutations(r.calls) == []


@pytest.mark.parametrize("plan", ["flex", "premium"])
def test_a_dry_run_deploys_python_3_13_by_default(azure, plan: str) -> None:
    r = azure("--plan", plan, "--dry-run")
    assert r.code == 0, r.out
    [create] = [line for line in r.out.splitlines() if "az functionapp create" in line]
    assert "--runtime python --runtime-version 3.13 " in create, create


def test_the_default_python_is_the_version_the_suite_runs_on() -> None:
    text = (ROOT / "scripts" / "pythons.sh").read_text()
    assert "DEFAULT_PYTHON=3.13" in text
    usage = subprocess.run(["bash", str(ROOT / "scripts" / "deploy.sh"), "--help"], capture_output=True, text=True)
    assert "(default: 3.13, the version the tests run on" in usage.stdout

"""scripts/deploy.sh against stand-in `az` and `func` executables that record argv and answer like Azure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_az.py")
PASSWORD = "sasl-Qw3rTy9Zx7Vb2Nm5"
PRODUCER_JSON = '{"linger.ms": 10, "sasl.password": "pj-Lk8Jh6Gf4Ds2"}'
REGISTRY_JSON = '{"basic.auth.user.info": "SRKEY:sr-Po9Iu7Yt5Re3"}'
SECRETS = (PASSWORD, "pj-Lk8Jh6Gf4Ds2", "sr-Po9Iu7Yt5Re3")
MUTATING = ("create", "set", "update", "delete", "assign", "tag", "restart", "recover")


@dataclass
class Result:
    code: int
    out: str
    calls: list[list[str]]


@pytest.fixture
def azure(tmp_path: Path):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "func"):
        exe = bin_dir / tool
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" {"" if tool == "az" else "func "}"$@"\n')
        exe.chmod(0o755)
    secrets = tmp_path / "deploy.secrets"
    secrets.write_text(
        "# filled by the user\n"
        "KAFKA_BOOTSTRAP_SERVERS=pkc-123.westeurope.azure.confluent.cloud:9092\n"
        "KAFKA_SASL_USERNAME=APIKEY123\n"
        f"KAFKA_SASL_PASSWORD={PASSWORD}\n"
        f"KAFKA_PRODUCER_CONFIG={PRODUCER_JSON}\n"
        f"SCHEMA_REGISTRY_CONFIG={REGISTRY_JSON}\n"
    )
    base_env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_AZ_STATE": str(tmp_path / "state.json"),
        "FAKE_AZ_LOG": str(tmp_path / "calls.log"),
        "DEPLOY_POLL_SECONDS": "0",
    }

    def run(*args: str, fail: str | None = None, env: dict[str, str] | None = None) -> Result:
        log = tmp_path / "calls.log"
        log.write_text("")
        run_env = {**base_env, **(env or {})}
        if fail:
            run_env["FAKE_AZ_FAIL"] = fail
        proc = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "deploy.sh"),
                "--secrets-file",
                str(secrets),
                "--schema-registry-url",
                "https://psrc-1.westeurope.azure.confluent.cloud",
                *args,
            ],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return Result(proc.returncode, proc.stdout + proc.stderr, calls)

    run.state = lambda: json.loads((tmp_path / "state.json").read_text())  # type: ignore[attr-defined]
    run.env = base_env  # type: ignore[attr-defined]
    return run


def mutations(calls: list[list[str]]) -> list[str]:
    out = []
    for c in calls:
        words = [w for w in c if not w.startswith("-")][:4]
        if c[0] == "func" or any(w in MUTATING for w in words):
            verb = []
            for w in c:
                if w.startswith("-"):
                    break
                verb.append(w)
            out.append(" ".join(verb[:4]))
    return out


def assert_no_secret(result: Result) -> None:
    for secret in SECRETS:
        assert secret not in result.out
        assert all(secret not in arg for call in result.calls for arg in call)


def test_premium_first_run_creates_everything_in_order(azure) -> None:
    r = azure("--plan", "premium")
    assert r.code == 0, r.out
    assert mutations(r.calls) == [
        "group create",
        "storage account create",
        "keyvault create",
        "role assignment create",
        *["keyvault secret set"] * 5,
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
        ("--runtime-version", "3.11"),
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
    # the app and the rest first, then its plan (a plan with an app on it cannot be deleted)
    assert mutations(r.calls) == ["resource delete", "resource delete"]
    assert all("/serverFarms/" in i for i in r.calls[-1][r.calls[-1].index("--ids") + 1 :])
    left = {v["name"] for v in azure.state()["resources"].values()}
    assert left == {"shared-rg", "theirs"}


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

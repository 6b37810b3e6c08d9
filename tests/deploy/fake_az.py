"""A stand-in `az` (and `func`) for testing scripts/deploy.sh: records argv, keeps resources in a JSON state
file, and answers the queries deploy.sh makes the way the Azure CLI does (JSON/TSV, exit code 3 for a
resource that does not exist). Environment: FAKE_AZ_STATE, FAKE_AZ_LOG, FAKE_AZ_FAIL (a substring of the
command line that makes the call fail like az does), FAKE_AZ_LOGIN (`user` or `servicePrincipal`).

Rules of the real Azure CLI 2.91.0 it enforces (each checked against that CLI's own argument validation):
`az resource list` refuses `--tag` together with `--resource-group`; `az functionapp plan create|update`
accept `--max-burst` 0..20 only; `az ad signed-in-user show` fails under a service-principal login;
`--assignee` is resolved through Microsoft Graph, which does not yet see a just-created managed identity.
Platform behaviour it models: a role assignment reaches the Key Vault data plane a few calls after it is made;
Key Vault references resolve when settings change or the app restarts after that; `az group delete`
soft-deletes the group's vaults, whose names stay taken until recovered or purged; az prints WARNING lines on
stderr.

Every argv is first checked against the real CLI's argument registry (`az_cli_spec.json`, read from Azure CLI
2.91.0's own command loader by dump_az_spec.py): an unknown option, an option without its value, a missing
required option, a value outside its choices or a non-integer for an `int` option exits 2 with the CLI's
message, before anything else. Flex Consumption rules read from that version's appservice `custom.py` and
`_validators.py`: `functionapp create` takes exactly one of `--plan`, `--consumption-plan-location`,
`--flexconsumption-location`; the Flex-only options (`--always-ready-instances`, `--maximum-instance-count`,
`--instance-memory`, `--deployment-storage-*`) need `--flexconsumption-location`; Flex refuses `--os-type windows`
and `--deployment-storage-auth-value` with `SystemAssignedIdentity`; Linux apps need `--runtime`; a Flex app gets a
plan of its own (`ASP-<group>-xxxx`, untagged) and a `functionAppConfig`; `scale config`, `scale config
always-ready` and `deployment config` refuse an app that is not on Flex Consumption (`validate_is_flex_functionapp`);
always-ready values must be integers (`validate_and_convert_to_int`).

Like the CLI (2.91.0 `azure.cli.core.commands._expand_file_prefixed_files`), an argument `@FILE`, or the value
of `KEY=@FILE`, is replaced by the file's content before parsing (kept as it is when no such file exists); the
log records argv as given. `functionapp create` without `--disable-app-insights true` makes an Application
Insights component of its own and sets its connection string, as the CLI does. `deployment group create` is
modelled in fake_arm.py; the monitoring resources (workspace, action group, component, rules, workbook) are kept
like the others and found by tag."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import fake_arm

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
USER_ID = "11111111-2222-3333-4444-555555555555"
SP_ID = "99999999-8888-7777-6666-555555555555"
TENANT = "72f988bf-0000-4000-8000-00000000c0de"
PROPAGATION_CALLS = 3  # az calls after a role assignment before the vault's data plane honours it
SPEC: dict[str, dict[str, dict[str, Any]]] = json.loads(Path(__file__).with_name("az_cli_spec.json").read_text())[
    "commands"
]


def _is_option(token: str) -> bool:
    return token.startswith("--") or (len(token) == 2 and token[0] == "-" and token[1].isalpha())


def check_argv(verb: str, args: list[str]) -> str | None:
    """The CLI parser's refusal for this argv, in its words, or None when the real CLI would accept it."""
    spec = SPEC.get(verb)
    if spec is None:
        return f"fake az has no argument spec for '{verb}' (add it to dump_az_spec.py and regenerate)"
    by_option = {option: (dest, arg) for dest, arg in spec.items() for option in arg["options"]}
    seen: set[str] = set()
    i = 0
    while i < len(args):
        token = args[i]
        if token not in by_option:
            return f"unrecognized arguments: {token}"
        dest, arg = by_option[token]
        seen.add(dest)
        if arg["kind"] == "flag":
            i += 1
            continue
        values = []
        j = i + 1
        while j < len(args) and not _is_option(args[j]):
            values.append(args[j])
            j += 1
            if arg["kind"] == "value":
                break
        if not values and arg["kind"] != "optional-value":
            return f"argument {token}: expected {'one argument' if arg['kind'] == 'value' else 'at least one argument'}"
        for value in values:
            choices = arg.get("choices")
            if choices and value.lower() not in [str(c).lower() for c in choices]:
                return f"argument {token}: invalid choice: '{value}'"
            if arg.get("type") == "int":
                try:
                    int(value)
                except ValueError:
                    return f"argument {token}: invalid int value: '{value}'"
        i = j
    missing = [arg["options"][0] for dest, arg in spec.items() if arg["required"] and dest not in seen]
    if missing:
        return "the following arguments are required: " + ", ".join(missing)
    return None


def opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def multi(argv: list[str], name: str) -> list[str]:
    """Values after `name` up to the next option."""
    if name not in argv:
        return []
    out = []
    for a in argv[argv.index(name) + 1 :]:
        if a.startswith("--"):
            break
        out.append(a)
    return out


def tags(argv: list[str]) -> dict[str, str]:
    return dict(t.split("=", 1) for t in multi(argv, "--tags"))


def resolve(obj: Any, query: str | None) -> Any:
    if not query:
        return obj
    if query == "length(@)":
        return len(obj)
    m = re.fullmatch(r"length\(\[\?principalId=='([^']*)'\]\)", query)
    if m:
        return len([r for r in obj if r["principal"] == m.group(1)])
    if query == "length(value[?properties.status!='Resolved'])":
        return len([r for r in obj["value"] if r["properties"]["status"] != "Resolved"])
    if query == "[].[id,resourceGroup]":
        return [[r["id"], r["group"].upper()] for r in obj]  # Azure may return the group in another case
    if query == "[].[name,value]":
        return [[s["name"], s["value"]] for s in obj]
    if query == "[].id":
        return [r["id"] for r in obj]
    if query == "[0].appId":
        return obj[0]["appId"] if obj else None
    if query == "[].keyId":
        return [c["keyId"] for c in obj]
    m = re.fullmatch(r"\[\?name=='([^']*)'\]\.name", query)
    if m:
        return [s["name"] for s in obj if s["name"] == m.group(1)]
    if query == "alwaysReady[].[name,instanceCount]":
        return [[r["name"], r["instanceCount"]] for r in obj.get("alwaysReady", [])]
    for part in query.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def emit(value: Any, argv: list[str]) -> None:
    if opt(argv, "--output") == "none" or opt(argv, "-o") == "none":
        return
    if opt(argv, "-o") == "tsv" or opt(argv, "--output") == "tsv":
        if value is None:
            return
        if isinstance(value, list):
            for row in value:
                print("\t".join(map(str, row)) if isinstance(row, list) else row)
        else:
            print(str(value).lower() if isinstance(value, bool) else value)
        return
    print(json.dumps(value))


PROVIDERS = {
    "identity": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "storage": "Microsoft.Storage/storageAccounts",
    "vault": "Microsoft.KeyVault/vaults",
    "plan": "Microsoft.Web/serverFarms",
    "app": "Microsoft.Web/sites",
    "workspace": "Microsoft.OperationalInsights/workspaces",
    "actiongroup": "microsoft.insights/actionGroups",
    "component": "Microsoft.Insights/components",
    "alert": "Microsoft.Insights/scheduledQueryRules",
    "workbook": "Microsoft.Insights/workbooks",
}
KINDS = {provider.lower(): kind for kind, provider in PROVIDERS.items()}


def resource_id(kind: str, name: str, group: str) -> str:
    """An Azure-shaped resource id (deploy.sh reads the plan's name out of an app's serverFarmId)."""
    if kind == "group":
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{PROVIDERS[kind]}/{name}"


def expand_files(argv: list[str]) -> list[str]:
    """`@FILE` and `KEY=@FILE` arguments replaced by the file's content, trailing newline dropped, as the CLI does."""

    def load(arg: str) -> str:
        if arg.startswith("@") and len(arg) > 1:
            try:
                return Path(arg[1:]).read_text().rstrip("\n")
            except OSError:
                return arg
        return arg

    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{key}={load(value)}" if sep else load(arg))
    return out


def receivers(argv: list[str]) -> list[list[str]]:
    """Every `--action TYPE NAME ARGS...` of an action group, in order."""
    found, i = [], 0
    while i < len(argv):
        if argv[i] in ("--action", "--actions", "-a"):
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                j += 1
            found.append(argv[i + 1 : j])
            i = j
        else:
            i += 1
    return found


def not_found(what: str) -> int:
    print(f"ERROR: (ResourceNotFound) The Resource '{what}' was not found.", file=sys.stderr)
    return 3


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_AZ_STATE"])
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    res: dict[str, dict[str, Any]] = state.setdefault("resources", {})
    with open(os.environ["FAKE_AZ_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    state["calls"] = state.get("calls", 0) + 1
    login = os.environ.get("FAKE_AZ_LOGIN", "user")
    fail = os.environ.get("FAKE_AZ_FAIL")
    if fail and fail in " ".join(argv):
        print("ERROR: (AuthorizationFailed) The client does not have authorization to perform action.", file=sys.stderr)
        return 1
    if argv and argv[0] == "func":
        print("Remote build succeeded!")
        return 0
    argv = expand_files(argv)

    cmd = []
    for a in argv:
        if a.startswith("-"):
            break
        cmd.append(a)
    verb = " ".join(cmd)
    refusal = check_argv(verb, argv[len(cmd) :])
    if refusal:
        print(f"ERROR: {refusal}", file=sys.stderr)
        return 2
    name, group, query = opt(argv, "--name"), opt(argv, "--resource-group"), opt(argv, "--query")

    def save() -> None:
        state_path.write_text(json.dumps(state))

    save()  # the call counter

    def propagated(principal: str) -> bool:
        return any(
            r["principal"] == principal
            and r["role"] == "Key Vault Secrets User"
            and state["calls"] - r["at"] >= PROPAGATION_CALLS
            for r in state.get("roles", [])
        )

    def create(kind: str, key: str, **extra: Any) -> int:
        res[f"{kind}:{key}"] = {
            "id": resource_id(kind, key, group or key),
            "name": key,
            "kind": kind,
            "group": group or key,
            "tags": tags(argv),
            **extra,
        }
        save()
        emit(res[f"{kind}:{key}"], argv)
        return 0

    def show(kind: str, key: str | None) -> int:
        r = res.get(f"{kind}:{key}")
        if r is None:
            return not_found(f"{kind}/{key}")
        emit(resolve(r, query), argv)
        return 0

    def usage(message: str) -> int:
        print(f"ERROR: {message}", file=sys.stderr)
        return 2

    def create_functionapp() -> int:
        """`az functionapp create` as Azure CLI 2.91.0's custom.create_functionapp checks and builds it."""
        flex_location = opt(argv, "--flexconsumption-location")
        plan = opt(argv, "--plan")
        hosts = [x for x in (plan, opt(argv, "--consumption-plan-location"), flex_location) if x]
        if len(hosts) != 1:
            return usage(
                "usage error: You must specify one of these parameter --plan NAME_OR_ID | "
                "--consumption-plan-location LOCATION | --flexconsumption-location LOCATION"
            )
        flex_only = (
            "--always-ready-instances",
            "--maximum-instance-count",
            "--instance-memory",
            "--deployment-storage-name",
            "--deployment-storage-container-name",
            "--deployment-storage-auth-type",
            "--deployment-storage-auth-value",
        )
        if flex_location is None and any(o in argv for o in flex_only):
            return usage(
                "usage error: parameters --always-ready-instances, --maximum-instance-count, --instance-memory, "
                "--deployment-storage-name, --deployment-storage-container-name, --deployment-storage-auth-type "
                "and --deployment-storage-auth-value must be used with parameter --flexconsumption-location"
            )
        os_type = (opt(argv, "--os-type") or "").lower()
        if flex_location is not None and os_type and os_type != "linux":
            return usage("--os-type windows is not a valid input for Azure Functions on the Flex Consumption plan.")
        auth_type = opt(argv, "--deployment-storage-auth-type") or "StorageAccountConnectionString"
        system_auth = auth_type == "SystemAssignedIdentity"
        if flex_location is not None and "--deployment-storage-auth-value" in argv and system_auth:
            return usage(
                "--deployment-storage-auth-value is only a valid input when --deployment-storage-auth-type is "
                "set to UserAssignedIdentity or StorageAccountConnectionString."
            )
        is_linux = flex_location is not None or os_type == "linux"
        if plan:
            farm = res.get(f"plan:{plan}")
            if farm is None:
                print(f"ERROR: The plan '{plan}' doesn't exist", file=sys.stderr)
                return 3
            is_linux = True
        if is_linux and not opt(argv, "--runtime"):
            return usage("usage error: --runtime RUNTIME required for linux functions apps without custom image.")
        if opt(argv, "--runtime-version") and not opt(argv, "--runtime"):
            return usage("Must specify --runtime to use --runtime-version")
        if f"storage:{opt(argv, '--storage-account')}" not in res:
            print("ERROR: (ResourceNotFound) storage account not found", file=sys.stderr)
            return 3
        identity = f"principal-of-{name}" if "--assign-identity" in argv else ""
        app_name = name or ""
        # The CLI sets the storage connection string, account key and all (custom.create_functionapp).
        storage = opt(argv, "--storage-account")
        implicit: list[dict[str, Any]] = [
            {
                "name": "AzureWebJobsStorage",
                "value": f"DefaultEndpointsProtocol=https;AccountName={storage};AccountKey=fake-account-key==",
                "slotSetting": False,
            }
        ]
        if (opt(argv, "--disable-app-insights") or ("true" if "--disable-app-insights" in argv else "false")) != "true":
            # The CLI's try_create_application_insights: a component named after the app, untagged, wired to it.
            res[f"component:{app_name}"] = {
                "id": resource_id("component", app_name, group or ""),
                "name": app_name,
                "kind": "component",
                "group": group,
                "tags": {},
                "properties": {"ConnectionString": f"InstrumentationKey=implicit-{app_name}"},
            }
            implicit += [
                {
                    "name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
                    "value": f"InstrumentationKey=implicit-{app_name}",
                    "slotSetting": False,
                }
            ]
        if flex_location is None:
            return create(
                "app",
                app_name,
                state="Running",
                principalId=identity,
                settings=implicit,
                scaleMonitoring=False,
                serverFarmId=res[f"plan:{plan}"]["id"],
                defaultHostName=f"{app_name}.azurewebsites.net",
                # The CLI sets a Linux app's stack as "<Runtime>|<version>" (its stacks list: Python|3.13).
                siteConfig={"linuxFxVersion": f"Python|{opt(argv, '--runtime-version')}"},
            )
        ready = []
        for item in multi(argv, "--always-ready-instances"):
            key, _, value = item.partition("=")
            try:
                ready.append({"name": key, "instanceCount": max(0, int(value))})
            except ValueError:
                return usage(f"{key} is expected to have an int value.")
        # The CLI creates the Flex plan itself, untagged, named after the group; the app's system identity is what
        # reaches the deployment container with SystemAssignedIdentity (the CLI assigns it and its storage role).
        plan_name = "ASP-" + re.sub(r"[^a-zA-Z0-9]", "", group or "")[:31] + "-a1b2"
        res[f"plan:{plan_name}"] = {
            "id": resource_id("plan", plan_name, group or ""),
            "name": plan_name,
            "kind": "plan",
            "group": group,
            "tags": {},
            "sku": "FC1",
        }
        if auth_type == "SystemAssignedIdentity":
            identity = f"principal-of-{name}"
        config = {
            "scaleAndConcurrency": {
                "maximumInstanceCount": int(opt(argv, "--maximum-instance-count") or 100),
                "instanceMemoryMB": int(opt(argv, "--instance-memory") or 2048),
                "alwaysReady": ready,
            },
            "deployment": {"storage": {"type": "blobContainer", "authentication": {"type": auth_type}}},
            "runtime": {"name": opt(argv, "--runtime"), "version": opt(argv, "--runtime-version")},
        }
        return create(
            "app",
            app_name,
            state="Running",
            principalId=identity,
            settings=implicit,
            scaleMonitoring=False,
            flex=True,
            serverFarmId=res[f"plan:{plan_name}"]["id"],
            functionAppConfig=config,
            defaultHostName=f"{app_name}-h4sh.{flex_location}-01.azurewebsites.net",
        )

    def deploy() -> int:
        """`az deployment group create --template-file F --parameters K=V ...` (fake_arm.py)."""
        if f"group:{group}" not in res:
            print(f"ERROR: (ResourceGroupNotFound) Resource group '{group}' could not be found.", file=sys.stderr)
            return 3
        template = json.loads(Path(opt(argv, "--template-file") or "").read_text())
        no_prompt = (opt(argv, "--no-prompt") or ("true" if "--no-prompt" in argv else "false")) == "true"
        try:
            values = fake_arm.parameters(template, multi(argv, "--parameters"), no_prompt)
            made = fake_arm.resources(template, values)
        except fake_arm.DeploymentError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return exc.code
        for item in made:
            kind = KINDS[item["type"].lower()]
            res[f"{kind}:{item['name']}"] = {
                "id": resource_id(kind, item["name"], group or ""),
                "name": item["name"],
                "kind": kind,
                "group": group,
                "tags": item["tags"],
                "properties": item.get("properties", {}),
            }
        state.setdefault("deployments", {})[f"{group}/{name}"] = {
            "name": name,
            "properties": {
                "provisioningState": "Succeeded",
                "parameters": {k: {"value": v} for k, v in values.items()},
            },
        }
        state["deployed"] = state.get("deployed", 0) + 1
        save()
        return 0

    def entra() -> int:
        """Microsoft Graph as the CLI's `ad` commands see it (app registrations, service principals, client
        secrets), and user-assigned identities: enough for keyless deploys and rotations to be checked."""
        graph = state.setdefault("graph", {"apps": [], "sps": {}, "credentials": {}})
        app_id = opt(argv, "--id")
        if verb == "identity create":
            principal = f"mi-principal-{name}"
            return create("identity", name or "", clientId=f"mi-client-{name}", principalId=principal)
        if verb == "ad app list":
            found = [a for a in graph["apps"] if a["displayName"] == opt(argv, "--display-name")]
            emit(resolve(found, query), argv)
            return 0
        if verb == "ad app create":
            app = {"appId": f"app-{len(graph['apps']) + 1:04d}", "displayName": opt(argv, "--display-name")}
            graph["apps"].append(app)
            save()
            emit(resolve(app, query), argv)
            return 0
        known = next((a for a in graph["apps"] if a["appId"] == app_id), None)
        if verb == "ad sp show":
            if app_id not in graph["sps"]:
                return not_found(f"servicePrincipals/{app_id}")
            emit(resolve(graph["sps"][app_id], query), argv)
            return 0
        if known is None:
            print(
                f"ERROR: Resource '{app_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
                file=sys.stderr,
            )
            return 3
        if verb == "ad app update":
            known["identifierUris"] = multi(argv, "--identifier-uris")
            known["requestedAccessTokenVersion"] = opt(argv, "--requested-access-token-version")
        elif verb == "ad sp create":
            graph["sps"][app_id] = {"id": f"sp-of-{app_id}", "appId": app_id}
            emit(resolve(graph["sps"][app_id], query), argv)
        elif verb == "ad app credential reset":
            held = graph["credentials"].setdefault(app_id, [])
            if "--append" not in argv:
                held.clear()
            secret = {"keyId": f"key-{state['calls']:04d}", "password": f"pw-{os.urandom(8).hex()}"}
            held.append(secret)
            print("WARNING: The output includes credentials that you must protect.", file=sys.stderr)
            emit(resolve({"appId": app_id, "password": secret["password"], "tenant": TENANT}, query), argv)
        elif verb == "ad app credential list":
            emit(resolve([{"keyId": c["keyId"]} for c in graph["credentials"].get(app_id, [])], query), argv)
        elif verb == "ad app credential delete":
            held = graph["credentials"].get(app_id, [])
            graph["credentials"][app_id] = [c for c in held if c["keyId"] != opt(argv, "--key-id")]
        else:
            return usage(f"fake az does not model {verb}")
        save()
        return 0

    def flex_config() -> int:
        """`functionapp scale config …` and `deployment config …`: valid only for a Flex Consumption app
        (2.91.0's validate_is_flex_functionapp), read-modify-write of its functionAppConfig."""
        app = res.get(f"app:{name}")
        if app is None:
            return not_found(f"sites/{name}")
        if not app.get("flex"):
            print("ERROR: This command is only valid for Azure Functions on the FlexConsumption plan.", file=sys.stderr)
            return 1
        config = app["functionAppConfig"]
        scale = config["scaleAndConcurrency"]
        if verb == "functionapp scale config show":
            emit(resolve(scale, query), argv)
        elif verb == "functionapp scale config set":
            if opt(argv, "--maximum-instance-count"):
                scale["maximumInstanceCount"] = int(opt(argv, "--maximum-instance-count") or 0)
            if opt(argv, "--instance-memory"):
                scale["instanceMemoryMB"] = int(opt(argv, "--instance-memory") or 0)
        elif verb == "functionapp scale config always-ready set":
            updated = {}
            for item in multi(argv, "--settings"):
                key, _, value = item.partition("=")
                try:
                    updated[key] = max(0, int(value))
                except ValueError:
                    return usage(f"{key} is expected to have an int value.")
            scale["alwaysReady"] = [{"name": k, "instanceCount": v} for k, v in updated.items()] + [
                r for r in scale.get("alwaysReady", []) if r["name"] not in updated
            ]
        elif verb == "functionapp scale config always-ready delete":
            names = multi(argv, "--setting-names")
            scale["alwaysReady"] = [r for r in scale.get("alwaysReady", []) if r["name"] not in names]
        elif verb == "functionapp deployment config show":
            emit(resolve(config["deployment"], query), argv)
        elif verb == "functionapp deployment config set":
            auth = opt(argv, "--deployment-storage-auth-type")
            if auth == "SystemAssignedIdentity" and "--deployment-storage-auth-value" in argv:
                return usage(
                    "--deployment-storage-auth-value is only a valid input when "
                    "--deployment-storage-auth-type is set to UserAssignedIdentity or "
                    "StorageAccountConnectionString."
                )
            if auth:
                config["deployment"]["storage"]["authentication"]["type"] = auth
        save()
        return 0

    simple = {
        "group": "group",
        "storage account": "storage",
        "keyvault": "vault",
        "functionapp plan": "plan",
        "functionapp": "app",
        "monitor log-analytics workspace": "workspace",
        "monitor action-group": "actiongroup",
        "identity": "identity",
    }
    for prefix, kind in simple.items():
        if verb == f"{prefix} show":
            return show(kind, name)
    if verb == "account show":
        emit(resolve({"id": SUBSCRIPTION, "tenantId": TENANT, "user": {"type": login, "name": "someone"}}, query), argv)
        return 0
    if verb.startswith(("ad ", "identity create")):
        return entra()
    if verb == "account get-access-token":
        claims = {"aud": "https://management.core.windows.net/", "oid": SP_ID if login != "user" else USER_ID}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        emit(resolve({"accessToken": f"eyJhbGciOiJub25lIn0.{body}.sig"}, query), argv)
        return 0
    if verb == "keyvault create" and name in state.get("deleted_vaults", {}):
        print(
            f"ERROR: (VaultAlreadyExists) The vault name '{name}' is already in use. Vault names are globally unique "
            "and a soft-deleted vault holds its name until it is recovered or purged.",
            file=sys.stderr,
        )
        return 1
    if verb == "keyvault show-deleted":
        if name not in state.get("deleted_vaults", {}):
            return not_found(f"deletedVaults/{name}")
        emit(resolve(state["deleted_vaults"][name], query), argv)
        return 0
    if verb == "keyvault recover":
        res[f"vault:{name}"] = state["deleted_vaults"].pop(name or "")
        save()
        return 0
    if verb in ("functionapp plan create", "functionapp plan update"):
        burst = int(opt(argv, "--max-burst") or 1)
        if not 0 <= burst <= 20:
            print("ERROR: --max-burst must be between 0 and 20", file=sys.stderr)
            return 2
    if verb == "group create":
        return create("group", name or "")
    if verb == "storage account create":
        return create("storage", name or "")
    if verb == "keyvault create":
        return create("vault", name or "", rbac=opt(argv, "--enable-rbac-authorization"))
    if verb == "functionapp plan create":
        return create(
            "plan", name or "", sku=opt(argv, "--sku"), maximumElasticWorkerCount=int(opt(argv, "--max-burst") or 1)
        )
    if verb == "functionapp plan update":
        res[f"plan:{name}"]["maximumElasticWorkerCount"] = int(opt(argv, "--max-burst") or 1)
        save()
        return 0
    if verb == "functionapp create":
        return create_functionapp()
    if verb == "monitor log-analytics workspace create":
        return create("workspace", name or "", sku=opt(argv, "--sku"))
    if verb == "monitor action-group create":
        return create("actiongroup", name or "", receivers=receivers(argv), shortName=opt(argv, "--short-name"))
    if verb == "deployment group create":
        return deploy()
    if verb == "deployment group show":
        record = state.get("deployments", {}).get(f"{group}/{name}")
        if record is None:
            return not_found(f"deployments/{name}")
        emit(resolve(record, query), argv)
        return 0
    if verb == "deployment group delete":
        state.get("deployments", {}).pop(f"{group}/{name}", None)
        save()
        return 0
    if verb.startswith(("functionapp scale config", "functionapp deployment config")):
        return flex_config()
    if verb == "functionapp identity show":
        return show("app", name)
    if verb == "functionapp identity assign":
        print("WARNING: This command is in preview and under development.", file=sys.stderr)
        app = res[f"app:{name}"]
        for identity in multi(argv, "--identities") or ["[system]"]:
            if identity == "[system]":
                app["principalId"] = f"principal-of-{name}"
            else:
                found = next((r for r in res.values() if r["id"] == identity and r["kind"] == "identity"), None)
                if found is None:
                    return not_found(identity)
                app.setdefault("userAssignedIdentities", {})[identity] = {
                    "clientId": found["clientId"],
                    "principalId": found["principalId"],
                }
        save()
        emit(resolve({"principalId": app.get("principalId"), "type": "SystemAssigned"}, query), argv)
        return 0
    if verb == "ad signed-in-user show":
        if login != "user":
            print("ERROR: /me request is only valid with delegated authentication flow.", file=sys.stderr)
            return 1
        emit(resolve({"id": USER_ID}, query), argv)
        return 0
    if verb == "role assignment list":
        assignee = opt(argv, "--assignee")
        if assignee and assignee.startswith("principal-of-"):
            print(f"ERROR: Cannot find user or service principal in graph database for '{assignee}'.", file=sys.stderr)
            return 1
        found = [
            r
            for r in state.get("roles", [])
            if (assignee is None or r["principal"] == assignee)
            and r["role"] == opt(argv, "--role")
            and r["scope"] == opt(argv, "--scope")
        ]
        emit(resolve(found, query), argv)
        return 0
    if verb == "role assignment create":
        state.setdefault("roles", []).append(
            {
                "principal": opt(argv, "--assignee-object-id"),
                "type": opt(argv, "--assignee-principal-type"),
                "role": opt(argv, "--role"),
                "scope": opt(argv, "--scope"),
                "at": state["calls"],
            }
        )
        save()
        return 0
    if verb == "functionapp restart":
        app = res[f"app:{name}"]
        app["refsResolved"] = propagated(app["principalId"])
        app["restarts"] = app.get("restarts", 0) + 1
        save()
        return 0
    if verb == "rest":
        url = opt(argv, "--url") or ""
        app = next(
            r for r in res.values() if r["kind"] == "app" and url.startswith(f"https://management.azure.com{r['id']}/")
        )
        refs = [
            {
                "name": s["name"],
                "properties": {"status": "Resolved" if app.get("refsResolved") else "AccessToKeyVaultDenied"},
            }
            for s in app["settings"]
            if s["value"].startswith("@Microsoft.KeyVault(")
        ]
        emit(resolve({"value": refs}, query), argv)
        return 0
    if verb == "keyvault secret list":
        return 0
    if verb == "keyvault secret show":
        secret = state.get("secrets", {}).get(name or "")
        if secret is None:
            return not_found(f"secret/{name}")
        emit(resolve({"value": secret}, query), argv)
        return 0
    if verb == "keyvault secret set":
        state.setdefault("secrets", {})[name or ""] = Path(opt(argv, "--file") or "").read_text()
        save()
        return 0
    if verb == "functionapp config appsettings list":
        emit(resolve(res[f"app:{name}"]["settings"], query), argv)
        return 0
    if verb == "functionapp config appsettings delete":
        drop = set(multi(argv, "--setting-names"))
        res[f"app:{name}"]["settings"] = [s for s in res[f"app:{name}"]["settings"] if s["name"] not in drop]
        save()
        return 0
    if verb == "functionapp config appsettings set":
        current = {s["name"]: s for s in res[f"app:{name}"]["settings"]}
        for item in multi(argv, "--settings"):
            key, value = item.split("=", 1)
            current[key] = {"name": key, "value": value, "slotSetting": False}
        res[f"app:{name}"]["settings"] = list(current.values())
        res[f"app:{name}"]["refsResolved"] = propagated(res[f"app:{name}"]["principalId"])
        save()
        return 0
    if verb == "resource show" and "--ids" in argv:
        target = next((r for r in res.values() if r["id"].lower() == (opt(argv, "--ids") or "").lower()), None)
        if target is None:
            return not_found(opt(argv, "--ids") or "")
        emit(resolve(target, query), argv)
        return 0
    if verb == "resource show":
        app = res[f"app:{(name or '').split('/')[0]}"]
        properties = {
            "functionsRuntimeScaleMonitoringEnabled": app["scaleMonitoring"],
            "keyVaultReferenceIdentity": app.get("keyVaultReferenceIdentity", "SystemAssigned"),
        }
        emit(resolve({"properties": properties}, query), argv)
        return 0
    if verb == "resource update":
        app = res[f"app:{(name or '').split('/')[0]}"]
        path, _, value = (opt(argv, "--set") or "").partition("=")
        if path == "properties.functionsRuntimeScaleMonitoringEnabled":
            app["scaleMonitoring"] = True
        elif path == "properties.keyVaultReferenceIdentity":
            app["keyVaultReferenceIdentity"] = value
        else:
            return usage(f"fake az: resource update of {path} is not modelled")
        save()
        return 0
    if verb == "resource tag":
        target = next(r for r in res.values() if r["id"] == opt(argv, "--ids"))
        target["tags"].update(tags(argv))
        save()
        return 0
    if verb == "resource list":
        if "--tag" in argv and group:
            print("ERROR: you cannot use '--tag' with '--resource-group'", file=sys.stderr)
            return 2
        key, value = (opt(argv, "--tag") or "=").split("=", 1)
        found = [r for r in res.values() if r["kind"] != "group" and r["tags"].get(key) == value]
        emit(resolve(found, query), argv)
        return 0
    if verb == "resource delete":
        for rid in multi(argv, "--ids"):
            if "/serverFarms/" in rid and any(r.get("serverFarmId") == rid for r in res.values()):
                print(
                    "ERROR: (Conflict) Server farm cannot be deleted because it has web app(s) assigned to it.",
                    file=sys.stderr,
                )
                return 1
            for k in [k for k, r in res.items() if r["id"] == rid]:
                del res[k]
        save()
        return 0
    if verb == "group delete":
        for k in [k for k, r in res.items() if r["group"] == name or k == f"group:{name}"]:
            if res[k]["kind"] == "vault":
                state.setdefault("deleted_vaults", {})[res[k]["name"]] = res[k]
            del res[k]
        state["roles"] = []  # assignments at scopes inside the group go with it
        state["deployments"] = {k: v for k, v in state.get("deployments", {}).items() if not k.startswith(f"{name}/")}
        save()
        return 0
    print(f"ERROR: fake az does not know: {verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))  # the `func` wrapper passes "func" as the first argument

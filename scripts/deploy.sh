#!/usr/bin/env bash
# Provision Azure for the trade-settlement function app and publish it. Run after `az login`.
# Idempotent (a second run changes nothing that already matches), non-interactive, secrets never on a
# command line or in output. See --help.
set -euo pipefail

readonly TOOL_TAG="managed-by=trade-settlement-deploy"
readonly SECRET_KEYS=(KAFKA_BOOTSTRAP_SERVERS KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD KAFKA_PRODUCER_CONFIG SCHEMA_REGISTRY_CONFIG KAFKA_TRIGGER_OAUTH_CLIENT_SECRET)
# The two functions of function_app.py: the Kafka trigger and the sink connector's HTTP entry. One runs, the
# other is disabled the Azure way (app setting AzureWebJobs.<function>.Disabled=true).
readonly TRIGGER_FUNCTION="settle_user_trades"
readonly SINK_FUNCTION="settle_sink_batch"
readonly CONFIG_KEYS="PREFIX LOCATION RESOURCE_GROUP SUFFIX HOSTING_PLAN PLAN_SKU MAX_BURST INSTANCE_MEMORY MAX_INSTANCES ALWAYS_READY ENTRY SECRETS_FILE SCHEMA_REGISTRY_URL CONSUMER_GROUP LAG_THRESHOLD REPAIR_SCHEDULE ALERT_EMAIL ALERT_WEBHOOK DEAD_LETTER_THRESHOLD WORKSPACE_ID APP_INSIGHTS_ID AUTH KAFKA_CLUSTER_ID REGISTRY_CLUSTER_ID IDENTITY_POOL_ID TRIGGER_POOL_ID PYTHON_VERSION"
# Keyless (--auth entra): what the secrets file may hold then, and the one secret the deployment keeps (the
# trigger's client secret, made here); the roles an identity-based AzureWebJobsStorage needs.
readonly KEYLESS_KEYS=(KAFKA_BOOTSTRAP_SERVERS)
readonly TRIGGER_SECRET_KEY="KAFKA_TRIGGER_OAUTH_CLIENT_SECRET"
readonly STORAGE_ROLES=("Storage Blob Data Owner" "Storage Queue Data Contributor" "Storage Table Data Contributor")
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT_DIR
# What the CLI's core cannot make (Application Insights, scheduled query rules, a workbook) is one ARM template.
readonly MONITORING_TEMPLATE="$ROOT_DIR/scripts/monitoring/template.json"
readonly MONITORING_WORKBOOK="$ROOT_DIR/scripts/monitoring/workbook.json"
# The Python versions each plan runs on Functions v4, each with the month Azure's support for it ends (the
# language's community end of life, Microsoft Learn's support policy; the sources: docs/deploy.md, Python versions).
# 3.10's ended 2026-10 and the app needs 3.11+ (pyproject.toml). Tested here: scripts/pythons.sh's TESTED_PYTHONS (3.11,
# 3.12, 3.13); 3.14 is declared only: no 3.14 interpreter on the machines the tests run on.
readonly FLEX_PYTHONS="3.11:2027-10 3.12:2028-10 3.13:2029-10 3.14:2030-10"
readonly PREMIUM_PYTHONS="3.11:2027-10 3.12:2028-10 3.13:2029-10 3.14:2030-10"
# The default is the version the whole test suite runs on (DEFAULT_PYTHON).
# shellcheck source=scripts/pythons.sh
source "$ROOT_DIR/scripts/pythons.sh"

PREFIX="tradesettle"
LOCATION="westeurope"
RESOURCE_GROUP=""
SUFFIX=""
HOSTING_PLAN="flex"
PYTHON_VERSION="$DEFAULT_PYTHON"
PLAN_SKU="EP1"
MAX_BURST="20"
INSTANCE_MEMORY="2048"
MAX_INSTANCES="40"
ALWAYS_READY="1"
ENTRY="trigger"
SECRETS_FILE="deploy.secrets"
SCHEMA_REGISTRY_URL=""
CONSUMER_GROUP="trade-settlement"
LAG_THRESHOLD="1000"
REPAIR_SCHEDULE="*/10 * * * * *"
ALERT_EMAIL=""
ALERT_WEBHOOK=""
DEAD_LETTER_THRESHOLD="100"
WORKSPACE_ID=""
APP_INSIGHTS_ID=""
AUTH="key"
KAFKA_CLUSTER_ID=""
REGISTRY_CLUSTER_ID=""
IDENTITY_POOL_ID=""
TRIGGER_POOL_ID=""
WAIT_TIMEOUT="600"
POLL_SECONDS="${DEPLOY_POLL_SECONDS:-5}"
DRY_RUN=0
DESTROY=0
FORCE_PUBLISH=0
PRINT_ACLS=0
ROTATE=0
ROTATION_OVERLAP="600"

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh [options]

Creates or reuses, in order: resource group; storage account; Key Vault (RBAC mode); the secrets from the
secrets file; monitoring (a Log Analytics workspace, a workspace-based Application Insights, an action group, four
alert rules on the app's metrics and a workbook; docs/operations.md#alerts); the hosting plan; a Python (3.13
unless --python-version says otherwise) Functions v4 app on Linux with a system-assigned identity holding "Key Vault Secrets User" on the vault; app
settings (Key Vault references for secrets, the Application Insights connection string, the entry path's
AzureWebJobs.<function>.Disabled settings); the plan's scale settings; then publishes with
`func azure functionapp publish --build remote` and prints the next steps (function URL, the command that
reads its key, the ksql_apply invocation, the Kafka ACLs).

  --plan flex (default)    Flex Consumption: the platform scales each function on its own instances,
                           target-based, to zero without lag; always-ready instances keep the Kafka function
                           warm (billed as a baseline). No deployment slots, Linux only. The CLI creates the
                           plan with the app.
  --plan premium           Elastic Premium (EP1..EP3, Linux): bills at least one instance while deployed; needs
                           runtime scale monitoring for Kafka triggers, which this script turns on.
Every input is validated before anything is created. Use --destroy when done.

Options (each may also be set in a --config file as KEY=VALUE, e.g. LOCATION=northeurope; keys:
PREFIX LOCATION RESOURCE_GROUP SUFFIX HOSTING_PLAN PLAN_SKU MAX_BURST INSTANCE_MEMORY MAX_INSTANCES ALWAYS_READY
ENTRY SECRETS_FILE SCHEMA_REGISTRY_URL CONSUMER_GROUP LAG_THRESHOLD REPAIR_SCHEDULE ALERT_EMAIL ALERT_WEBHOOK
DEAD_LETTER_THRESHOLD WORKSPACE_ID APP_INSIGHTS_ID PYTHON_VERSION):
  --config FILE            read settings from FILE first
  --plan flex|premium      hosting plan (default: flex)
  --python-version X.Y     the app's Python: 3.11 (Azure's support ends 2027-10), 3.12 (2028-10), 3.13 (2029-10)
                           or 3.14 (2030-10) on either plan (default: 3.13, the version the tests run on; 3.14 is
                           declared, not tested here); an existing app keeps its version: --destroy to change it
  --entry trigger|connector  the one entry path that runs: the Kafka trigger (default), or the HTTP function
                           that Confluent's Azure Functions Sink Connector calls; the other function is
                           disabled with its AzureWebJobs.<function>.Disabled app setting
  --prefix NAME            name prefix, 3-12 lower-case letters and digits (default: tradesettle)
  --location REGION        Azure region (default: westeurope)
  --resource-group NAME    resource group (default: <prefix>-<suffix>-rg)
  --suffix SUFFIX          unique suffix for global names (default: derived from the subscription and prefix,
                           stable across runs)
  --instance-memory MB     flex: instance memory, 512, 2048 or 4096 (default: 2048)
  --max-instances N        flex: maximum instance count, 1..1000 (default: 40; the Kafka scaler never runs more
                           instances than user_trades has partitions)
  --always-ready N         flex: always-ready instances for the entry function, 0..max-instances (default: 1,
                           as the Kafka extension's maintainers advise for Kafka functions)
  --sku SKU                premium: EP1, EP2 or EP3 (default: EP1)
  --max-burst N            premium: maximum instances the plan may scale out to, 1..20 (default: 20)
  --secrets-file FILE      KEY=VALUE file with KAFKA_BOOTSTRAP_SERVERS, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
                           KAFKA_PRODUCER_CONFIG, SCHEMA_REGISTRY_CONFIG (default: deploy.secrets; '-' = stdin)
  --schema-registry-url URL  Schema Registry endpoint, https://... (not a secret; required)
  --consumer-group NAME    Kafka consumer group of the trigger (default: trade-settlement)
  --lag-threshold N        lag per instance that triggers scale-out (default: 1000)
  --repair-schedule CRON   when the repair timer settles what a dead instance left behind (NCRONTAB, seconds
                           first; default: '*/10 * * * * *'; the app refuses a bad one at start-up)
  --alert-email ADDR[,ADDR...]  e-mail receivers of the alerts' action group
  --alert-webhook URL      an https webhook receiver of the alerts (common alert schema); read from a private
                           file by az, never printed whole
  --dead-letter-threshold N  the dead-letter alert fires above N dead letters in 5 minutes (default: 100)
  --workspace-id ID        reuse this Log Analytics workspace (resource id) for a new Application Insights
  --app-insights-id ID     reuse this Application Insights component (resource id): no workspace or component is
                           created; the alerts and the workbook go on it
  --auth key|entra         key (default): every client signs in with the API keys of the secrets file. entra
                           (keyless): a user-assigned managed identity, created or reused and assigned to the app,
                           signs the producer, the ledger, the repair and the registry client in with Entra ID
                           tokens, and holds Key Vault and storage (identity-based AzureWebJobsStorage, no account
                           key); the trigger, which cannot use a managed identity, keeps one credential: the
                           client secret of an app registration made here, in the vault (scripts/rotate-secret.sh
                           rotates it). The secrets file then holds KAFKA_BOOTSTRAP_SERVERS only. Prints what to set
                           up on the Confluent Cloud side (docs/security.md)
  --kafka-cluster-id ID    entra: the Kafka cluster (lkc-...), sent as the SASL extension logicalCluster
  --registry-cluster-id ID entra: the Schema Registry cluster (lsrc-...)
  --identity-pool-id ID    entra: the identity pool of the app's managed identity (pool-...); with
  --trigger-identity-pool-id ID  the trigger's pool. Until both are given, the run stops after the identities
                           and prints the Confluent Cloud side to set up, then run again with them
  --rotate-trigger-secret  entra: rotate the trigger's client secret (a new one beside the old, stored as the vault
                           secret's new version, the app restarted to read it, the old ones removed after the
                           overlap), then exit; needs no secrets file
  --rotation-overlap S     seconds both secrets stay valid (default: 600)
  --force-publish          publish even if this code was already published
  --dry-run                validate everything, then print every command that would change something (secrets
                           masked) and what would be created or published; change nothing
  --print-acls             print the Kafka ACLs the function, the exactly-once ledger and the redrive tool need
                           (for --consumer-group), then exit; needs no Azure login
  --destroy                delete what this script created (found by tag); never a resource group it did not
                           create
  -h, --help               this text
EOF
}

die() { echo "deploy.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&3; }
# A change done, or in --dry-run the change that would be done: did create "resource group X" created
did() {
  if (( DRY_RUN )); then log "would $1 $2"; else log "$2 $3"; fi
}

# ---- arguments -------------------------------------------------------------------------------------------

load_config() {
  local file="$1" line key value
  [[ -f "$file" ]] || die "config file not found: $file"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" == *=* ]] || die "config file $file: not KEY=VALUE: $line"
    key="${line%%=*}"; value="${line#*=}"
    case " $CONFIG_KEYS " in
      *" $key "*) printf -v "$key" '%s' "$value" ;;
      *) die "config file $file: unknown key $key (known: $CONFIG_KEYS)" ;;
    esac
  done < "$file"
}

# The value of option $1 is $2; a missing value (the end of the line, or the next option) is an error that
# names the option, instead of bash's "parameter null or not set".
need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then die "$1 needs a value (see --help)"; fi
}

declare -A GIVEN=()

parse_args() {
  local args=("$@") i=0
  # --config first, so flags override it wherever they stand.
  while (( i < ${#args[@]} )); do
    if [[ "${args[i]}" == "--config" ]]; then
      need_value --config "${args[i+1]:-}"
      load_config "${args[i+1]}"
    fi
    i=$((i + 1))
  done
  while (($#)); do
    case "$1" in
      --config|--plan|--entry|--prefix|--location|--resource-group|--suffix|--sku|--max-burst|--instance-memory|\
      --max-instances|--always-ready|--secrets-file|--schema-registry-url|--consumer-group|--lag-threshold|\
      --repair-schedule|--alert-email|--alert-webhook|--dead-letter-threshold|--workspace-id|--app-insights-id|\
      --python-version|--auth|--kafka-cluster-id|--registry-cluster-id|--identity-pool-id|\
      --trigger-identity-pool-id|--rotation-overlap)
        need_value "$@"
        GIVEN[$1]=1
        case "$1" in
          --plan) HOSTING_PLAN="$2" ;;
          --entry) ENTRY="$2" ;;
          --prefix) PREFIX="$2" ;;
          --location) LOCATION="$2" ;;
          --resource-group) RESOURCE_GROUP="$2" ;;
          --suffix) SUFFIX="$2" ;;
          --sku) PLAN_SKU="$2" ;;
          --max-burst) MAX_BURST="$2" ;;
          --instance-memory) INSTANCE_MEMORY="$2" ;;
          --max-instances) MAX_INSTANCES="$2" ;;
          --always-ready) ALWAYS_READY="$2" ;;
          --secrets-file) SECRETS_FILE="$2" ;;
          --schema-registry-url) SCHEMA_REGISTRY_URL="$2" ;;
          --consumer-group) CONSUMER_GROUP="$2" ;;
          --lag-threshold) LAG_THRESHOLD="$2" ;;
          --repair-schedule) REPAIR_SCHEDULE="$2" ;;
          --alert-email) ALERT_EMAIL="$2" ;;
          --alert-webhook) ALERT_WEBHOOK="$2" ;;
          --dead-letter-threshold) DEAD_LETTER_THRESHOLD="$2" ;;
          --workspace-id) WORKSPACE_ID="$2" ;;
          --app-insights-id) APP_INSIGHTS_ID="$2" ;;
          --python-version) PYTHON_VERSION="$2" ;;
          --auth) AUTH="$2" ;;
          --kafka-cluster-id) KAFKA_CLUSTER_ID="$2" ;;
          --registry-cluster-id) REGISTRY_CLUSTER_ID="$2" ;;
          --identity-pool-id) IDENTITY_POOL_ID="$2" ;;
          --trigger-identity-pool-id) TRIGGER_POOL_ID="$2" ;;
          --rotation-overlap) ROTATION_OVERLAP="$2" ;;
          *) ;;  # --config: read above
        esac
        shift ;;
      --force-publish) FORCE_PUBLISH=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --destroy) DESTROY=1 ;;
      --print-acls) PRINT_ACLS=1 ;;
      --rotate-trigger-secret) ROTATE=1 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
  done
  validate_options
}

# Every option value, before anything is read from or changed in Azure.
validate_options() {
  local flag
  [[ "$HOSTING_PLAN" == "flex" || "$HOSTING_PLAN" == "premium" ]] || die "--plan must be flex or premium"
  [[ "$ENTRY" == "trigger" || "$ENTRY" == "connector" ]] || die "--entry must be trigger or connector"
  [[ "$PREFIX" =~ ^[a-z][a-z0-9]{2,11}$ ]] || die "--prefix must be 3-12 lower-case letters and digits"
  [[ "$LOCATION" =~ ^[a-z][a-z0-9]{2,39}$ ]] || die "--location must be an Azure region name such as westeurope"
  if [[ -n "$RESOURCE_GROUP" ]] && ! [[ "$RESOURCE_GROUP" =~ ^[-A-Za-z0-9._()]{1,90}$ && "$RESOURCE_GROUP" != *. ]]; then
    die "--resource-group must be 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
  fi
  [[ -z "$SUFFIX" || "$SUFFIX" =~ ^[a-z0-9]{3,8}$ ]] || die "--suffix must be 3-8 lower-case letters and digits"
  [[ "$CONSUMER_GROUP" =~ ^[A-Za-z0-9._-]{1,200}$ ]] || die "--consumer-group must be letters, digits, '.', '_' or '-'"
  [[ "$LAG_THRESHOLD" =~ ^[1-9][0-9]*$ ]] || die "--lag-threshold must be a whole number above 0"
  [[ "$REPAIR_SCHEDULE" =~ ^[0-9A-Za-z*,/-]+( [0-9A-Za-z*,/-]+){4,5}$ ]] \
    || die "--repair-schedule must be an NCRONTAB schedule of five or six fields, such as '*/10 * * * * *'"
  validate_python_version
  validate_monitoring_options
  validate_auth_options
  if [[ "$HOSTING_PLAN" == "flex" ]]; then
    for flag in --sku --max-burst; do
      [[ -z "${GIVEN[$flag]:-}" ]] \
        || die "$flag applies to --plan premium only (Flex Consumption: --instance-memory, --max-instances, --always-ready)"
    done
    # Flex instance sizes: the CLI hands --instance-memory to the platform, which accepts the sizes its SKU lists.
    [[ "$INSTANCE_MEMORY" =~ ^(512|2048|4096)$ ]] || die "--instance-memory must be 512, 2048 or 4096 (MB)"
    if ! [[ "$MAX_INSTANCES" =~ ^[0-9]+$ ]] || (( MAX_INSTANCES < 1 || MAX_INSTANCES > 1000 )); then
      die "--max-instances must be 1..1000 (Flex Consumption's highest maximum instance count)"
    fi
    if ! [[ "$ALWAYS_READY" =~ ^[0-9]+$ ]] || (( ALWAYS_READY > MAX_INSTANCES )); then
      die "--always-ready must be a whole number from 0 to --max-instances ($MAX_INSTANCES)"
    fi
  else
    for flag in --instance-memory --max-instances --always-ready; do
      [[ -z "${GIVEN[$flag]:-}" ]] || die "$flag applies to --plan flex only (Elastic Premium: --sku, --max-burst)"
    done
    [[ "$PLAN_SKU" =~ ^EP[123]$ ]] || die "--sku must be EP1, EP2 or EP3"
    # The Azure CLI (2.91.0) accepts --max-burst 0..20 for Elastic Premium plans; 0 would never scale out.
    if ! [[ "$MAX_BURST" =~ ^[0-9]+$ ]] || (( MAX_BURST < 1 || MAX_BURST > 20 )); then
      die "--max-burst must be 1..20 (the Azure CLI's limit for Elastic Premium plans)"
    fi
  fi
  (( DESTROY || PRINT_ACLS || ROTATE )) && return 0
  [[ -n "$SCHEMA_REGISTRY_URL" ]] || die "--schema-registry-url is required (the Schema Registry endpoint, https://...)"
  if placeholder "$SCHEMA_REGISTRY_URL"; then
    die "--schema-registry-url is still the example's placeholder: give your Schema Registry endpoint"
  fi
  [[ "$SCHEMA_REGISTRY_URL" =~ ^https?://[^[:space:]/]+(/[^[:space:]]*)?$ ]] \
    || die "--schema-registry-url must be an http(s) URL such as https://psrc-....confluent.cloud"
  return 0
}

# --python-version against the versions the chosen plan runs (FLEX_PYTHONS, PREMIUM_PYTHONS).
validate_python_version() {
  local supported entry versions=()
  if [[ "$HOSTING_PLAN" == "flex" ]]; then supported="$FLEX_PYTHONS"; else supported="$PREMIUM_PYTHONS"; fi
  for entry in $supported; do
    [[ "$PYTHON_VERSION" == "${entry%%:*}" ]] && return 0
    versions+=("${entry%%:*}")
  done
  die "--python-version must be one of ${versions[*]} on --plan $HOSTING_PLAN (Azure's supported Pythons the app runs on)"
}

# The Python an existing app runs: Flex keeps it in functionAppConfig, the others in the Linux stack string.
app_python_version() {
  if [[ "$HOSTING_PLAN" == "flex" ]]; then
    query az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query functionAppConfig.runtime.version -o tsv
  else
    local fx
    fx=$(query az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query siteConfig.linuxFxVersion -o tsv)
    printf '%s' "${fx#*|}"
  fi
}

# The monitoring options: receivers, the dead-letter threshold, resources to reuse (their existence is checked
# later, still before any change: check_reused).
validate_monitoring_options() {
  local email emails
  if [[ -n "$ALERT_EMAIL" ]]; then
    IFS=',' read -ra emails <<<"$ALERT_EMAIL"
    for email in "${emails[@]}"; do
      [[ "$email" =~ ^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$ ]] \
        || die "--alert-email must be e-mail addresses separated by commas, such as ops@example.com"
    done
  fi
  if [[ -n "$ALERT_WEBHOOK" ]]; then
    # The URL may hold a token: it is never repeated in a message.
    [[ "$ALERT_WEBHOOK" =~ ^https://[^[:space:]/]+(/[^[:space:]]*)?$ ]] \
      || die "--alert-webhook must be an https:// URL (the value is not shown)"
    ! placeholder "$ALERT_WEBHOOK" || die "--alert-webhook is still a placeholder: give your webhook's URL"
  fi
  [[ "$DEAD_LETTER_THRESHOLD" =~ ^(0|[1-9][0-9]{0,8})$ ]] \
    || die "--dead-letter-threshold must be a whole number from 0 (dead letters per 5 minutes)"
  if [[ -n "$WORKSPACE_ID" ]] \
      && ! [[ "${WORKSPACE_ID,,}" =~ ^/subscriptions/[0-9a-f-]{36}/resourcegroups/[^/]+/providers/microsoft\.operationalinsights/workspaces/[^/]+$ ]]; then
    die "--workspace-id must be a Log Analytics workspace's resource id (/subscriptions/.../providers/Microsoft.OperationalInsights/workspaces/NAME)"
  fi
  if [[ -n "$APP_INSIGHTS_ID" ]] \
      && ! [[ "${APP_INSIGHTS_ID,,}" =~ ^/subscriptions/[0-9a-f-]{36}/resourcegroups/[^/]+/providers/microsoft\.insights/components/[^/]+$ ]]; then
    die "--app-insights-id must be an Application Insights component's resource id (/subscriptions/.../providers/Microsoft.Insights/components/NAME)"
  fi
  if [[ -n "$WORKSPACE_ID" && -n "$APP_INSIGHTS_ID" ]]; then
    die "--workspace-id has no use with --app-insights-id: the component sends to its own workspace"
  fi
  return 0
}

# --auth and the Confluent Cloud ids keyless needs; none of them without --auth entra.
validate_auth_options() {
  [[ "$AUTH" == "key" || "$AUTH" == "entra" ]] || die "--auth must be key or entra"
  (( ! ROTATE )) || [[ "$AUTH" == "entra" ]] || die "--rotate-trigger-secret needs --auth entra (keyless keeps one secret)"
  if [[ "$AUTH" == "key" ]]; then
    [[ -z "$KAFKA_CLUSTER_ID$REGISTRY_CLUSTER_ID$IDENTITY_POOL_ID$TRIGGER_POOL_ID" ]] \
      || die "--kafka-cluster-id, --registry-cluster-id and the identity pools apply to --auth entra only"
    return 0
  fi
  [[ "$ROTATION_OVERLAP" =~ ^[0-9]+$ ]] || die "--rotation-overlap must be a whole number of seconds"
  (( DESTROY || PRINT_ACLS || ROTATE )) && return 0
  [[ "$KAFKA_CLUSTER_ID" =~ ^lkc-[a-z0-9]+$ ]] || die "--auth entra needs --kafka-cluster-id lkc-... (the Kafka cluster's id)"
  [[ "$REGISTRY_CLUSTER_ID" =~ ^lsrc-[a-z0-9]+$ ]] \
    || die "--auth entra needs --registry-cluster-id lsrc-... (the Schema Registry cluster's id)"
  [[ -z "$IDENTITY_POOL_ID" || "$IDENTITY_POOL_ID" =~ ^pool-[A-Za-z0-9]+$ ]] || die "--identity-pool-id must be pool-..."
  [[ -z "$TRIGGER_POOL_ID" || "$TRIGGER_POOL_ID" =~ ^pool-[A-Za-z0-9]+$ ]] || die "--trigger-identity-pool-id must be pool-..."
  [[ -n "$IDENTITY_POOL_ID" || -z "$TRIGGER_POOL_ID" ]] || die "--trigger-identity-pool-id needs --identity-pool-id too"
  [[ -z "$IDENTITY_POOL_ID" || -n "$TRIGGER_POOL_ID" ]] || die "--identity-pool-id needs --trigger-identity-pool-id too"
  return 0
}

# True for an example's placeholder: <...> text, or a run of x as in pkc-xxxxx.
placeholder() { [[ "$1" =~ \<[^\>]*\> || "${1,,}" == *xxxxx* ]]; }

# ---- running commands ------------------------------------------------------------------------------------

# Run a command that changes something; in --dry-run print it instead. Failures stop the script naming the step.
change() {
  local step="$1"; shift
  if (( DRY_RUN )); then
    printf '[dry-run] %s\n' "$*" >&3  # fd 3 is the terminal: callers silence the command's own output
    return 0
  fi
  # stdout is the command's answer (an id, a principal); its stderr (az WARNING lines) is shown only on failure.
  local out
  if ! out=$("$@" 2>"$WORK_DIR/change.err"); then
    die "step '$step' failed: $1 ${2:-} ${3:-}: $(tail -n 3 "$WORK_DIR/change.err")"
  fi
  printf '%s' "$out"
}

# Run a read-only query; prints its stdout. Exit 3 from az means "not found": returns 3, prints nothing.
query() {
  if (( DRY_RUN )) && [[ "$*" != "az account show"* ]]; then return 3; fi
  local out rc=0
  out=$("$@" 2>"$WORK_DIR/query.err") || rc=$?
  if (( rc == 3 )); then return 3; fi
  if (( rc != 0 )); then
    die "query failed: $1 ${2:-} ${3:-}: $(tail -n 3 "$WORK_DIR/query.err")"
  fi
  printf '%s' "$out"
}

# True if a `show` finds the resource, false on "not found"; any other failure stops the script (in query).
exists() {
  local rc=0
  query "$@" >/dev/null || rc=$?
  (( rc == 0 ))
}

# A value read from Azure, or in --dry-run (where nothing is read) a placeholder.
read_or() {
  local placeholder="$1"; shift
  if (( DRY_RUN )); then printf '%s' "$placeholder"; else query "$@"; fi
}

# Poll until a command succeeds (prints nothing), or give up after WAIT_TIMEOUT seconds.
wait_until() {
  local what="$1"; shift
  (( DRY_RUN )) && return 0
  local deadline=$((SECONDS + WAIT_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < deadline )) || die "timed out after ${WAIT_TIMEOUT}s waiting for $what"
    sleep "$POLL_SECONDS"
  done
}

# ---- names -----------------------------------------------------------------------------------------------

derive_names() {
  local subscription
  subscription=$(query az account show --query id -o tsv) || die "not logged in: run az login first"
  [[ -n "$subscription" ]] || die "not logged in: run az login first"
  if [[ -z "$SUFFIX" ]]; then
    SUFFIX=$(printf '%s|%s' "$subscription" "$PREFIX" | sha256sum | cut -c1-6)
  fi
  SUBSCRIPTION="$subscription"
  DEPLOYMENT="$PREFIX-$SUFFIX"
  RESOURCE_GROUP="${RESOURCE_GROUP:-$PREFIX-$SUFFIX-rg}"
  STORAGE="${PREFIX}${SUFFIX}st"
  VAULT="${PREFIX}-${SUFFIX}-kv"
  PLAN="${PREFIX}-${SUFFIX}-plan"
  APP="${PREFIX}-${SUFFIX}-func"
  TAGS=("$TOOL_TAG" "deployment=$DEPLOYMENT")
  WORKSPACE="${PREFIX}-${SUFFIX}-law"
  COMPONENT="${PREFIX}-${SUFFIX}-ai"
  ACTION_GROUP="${PREFIX}-${SUFFIX}-ag"
  MONITORING_DEPLOYMENT="${PREFIX}-${SUFFIX}-monitoring"
  ALERTS=("$PREFIX-$SUFFIX-settlement-lag" "$PREFIX-$SUFFIX-dead-letters" "$PREFIX-$SUFFIX-failed-batches"
    "$PREFIX-$SUFFIX-no-settlement")
  # A workbook's name is a GUID: one derived from the deployment, so that a re-run finds the same workbook.
  local h
  h=$(printf '%s|%s|workbook' "$subscription" "$DEPLOYMENT" | sha256sum)
  WORKBOOK_ID="${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}"
  log "deployment $DEPLOYMENT: group $RESOURCE_GROUP, app $APP, vault $VAULT, storage $STORAGE, plan $PLAN"
}

# ---- secrets ---------------------------------------------------------------------------------------------

declare -A SECRETS=()

read_secrets() {
  local src="$SECRETS_FILE" line key value n=0
  if [[ "$src" != "-" ]]; then
    [[ -f "$src" ]] || die "secrets file not found: $src (copy deploy.secrets.example and fill it in)"
  fi
  # Nothing of a line is ever printed unless it is a well-formed key name: a stray line may be part of a
  # secret (a JSON value broken over lines), and the text before its '=' could be too.
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    key="${line%%=*}"; value="${line#*=}"
    if [[ "$line" != *=* || ! "$key" =~ ^[A-Z][A-Z0-9_]*$ ]]; then
      die "secrets file: line $n is not KEY=VALUE on one line (the line is not shown)"
    fi
    case " ${SECRET_KEYS[*]} " in
      *" $key "*) SECRETS[$key]="$value" ;;
      *) die "secrets file: line $n has an unknown key $key (known: ${SECRET_KEYS[*]})" ;;
    esac
    if [[ "$key" == "$TRIGGER_SECRET_KEY" ]]; then
      die "secrets file: $key is made by --auth entra and rotated by scripts/rotate-secret.sh; remove the line"
    fi
    if [[ "$AUTH" == "entra" && " ${KEYLESS_KEYS[*]} " != *" $key "* ]]; then
      die "secrets file: $key is not used with --auth entra (our clients sign in with the managed identity): remove it"
    fi
  done < <(if [[ "$src" == "-" ]]; then cat; else cat -- "$src"; fi)
  local required needed=(KAFKA_BOOTSTRAP_SERVERS KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD)
  [[ "$AUTH" == "entra" ]] && needed=("${KEYLESS_KEYS[@]}")
  for required in "${needed[@]}"; do
    [[ -v "SECRETS[$required]" ]] || die "secrets file: $required is missing"
  done
  # Each message names the key, never the value (the value is a secret, or part of one).
  for key in "${SECRET_KEYS[@]}"; do
    [[ -v "SECRETS[$key]" ]] || continue
    value="${SECRETS[$key]}"
    [[ -n "$value" ]] || die "secrets file: $key is empty (give it a value, or delete the line if it is optional)"
    if placeholder "$value"; then
      die "secrets file: $key still holds the example's placeholder (the value is not shown): fill it in"
    fi
    case "$key" in
      KAFKA_BOOTSTRAP_SERVERS)
        [[ "$value" =~ ^[A-Za-z0-9.-]+:[0-9]+(,[A-Za-z0-9.-]+:[0-9]+)*$ ]] \
          || die "secrets file: $key must be host:port[,host:port...] (the value is not shown)" ;;
      KAFKA_PRODUCER_CONFIG|SCHEMA_REGISTRY_CONFIG)
        [[ "$value" =~ ^[[:space:]]*\{.*\}[[:space:]]*$ ]] \
          || die "secrets file: $key must be a JSON object on one line, {...} (the value is not shown)" ;;
      *) [[ "$value" != *[[:space:]]* ]] || die "secrets file: $key contains whitespace (the value is not shown)" ;;
    esac
  done
  return 0
}

secret_name() { local k="${1,,}"; printf '%s' "${k//_/-}"; }

# Set a vault secret from a private temporary file, only if its value differs. The value is never an argument.
put_secret() {
  local key="$1" name current tmp
  name=$(secret_name "$key")
  if (( DRY_RUN )); then
    printf '[dry-run] az keyvault secret set --vault-name %s --name %s --file <private temp file> --encoding utf-8\n' \
      "$VAULT" "$name" >&3
    return 0
  fi
  if current=$(query az keyvault secret show --vault-name "$VAULT" --name "$name" --query value -o tsv 2>/dev/null) \
      && [[ "$current" == "${SECRETS[$key]}" ]]; then
    return 0
  fi
  tmp=$(mktemp "$WORK_DIR/secret.XXXXXX")
  printf '%s' "${SECRETS[$key]}" > "$tmp"
  change "store secret $name" az keyvault secret set --vault-name "$VAULT" --name "$name" --file "$tmp" \
    --encoding utf-8 --output none >/dev/null
  rm -f "$tmp"
  did set "secret $name" set
}

# ---- steps -----------------------------------------------------------------------------------------------

ensure_group() {
  if exists az group show --name "$RESOURCE_GROUP"; then
    log "resource group $RESOURCE_GROUP exists"
  else
    change "create resource group" az group create --name "$RESOURCE_GROUP" --location "$LOCATION" \
      --tags "${TAGS[@]}" --output none >/dev/null
    did create "resource group $RESOURCE_GROUP" created
  fi
}

ensure_storage() {
  if exists az storage account show --name "$STORAGE" --resource-group "$RESOURCE_GROUP"; then
    log "storage account $STORAGE exists"
  else
    change "create storage account" az storage account create --name "$STORAGE" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 \
      --allow-blob-public-access false --tags "${TAGS[@]}" --output none >/dev/null
    did create "storage account $STORAGE" created
  fi
}

ensure_vault() {
  if exists az keyvault show --name "$VAULT" --resource-group "$RESOURCE_GROUP"; then
    log "key vault $VAULT exists"
  elif exists az keyvault show-deleted --name "$VAULT"; then
    # A destroyed deployment leaves its vault soft-deleted, holding the name: bring it back (secrets and all).
    change "recover key vault" az keyvault recover --name "$VAULT" --output none >/dev/null
    did recover "key vault $VAULT from soft delete" "recovered"
  else
    change "create key vault" az keyvault create --name "$VAULT" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --enable-rbac-authorization true --tags "${TAGS[@]}" --output none >/dev/null
    did create "key vault $VAULT (RBAC mode)" created
  fi
  VAULT_ID=$(read_or '<vault-id>' az keyvault show --name "$VAULT" --resource-group "$RESOURCE_GROUP" --query id -o tsv)
  VAULT_URI="https://${VAULT}.vault.azure.net"
}

ensure_role() {
  local principal="$1" type="$2" role="$3" scope="${4:-$VAULT_ID}" count
  # Filtered by object id on our side: `--assignee` resolves the principal through Microsoft Graph, which may
  # not see a managed identity created moments ago.
  count=$(read_or 0 az role assignment list --scope "$scope" --role "$role" \
    --query "length([?principalId=='$principal'])" -o tsv)
  if [[ "$count" == "0" ]]; then
    change "grant $role" az role assignment create --assignee-object-id "$principal" --assignee-principal-type "$type" \
      --role "$role" --scope "$scope" --output none >/dev/null
    did grant "$role to $type $principal on ${scope##*/}" granted
  fi
}

# The signed-in principal's object id and type, for a user or a service principal (CI) alike, without Microsoft
# Graph: the object id is the `oid` claim of the CLI's own access token.
signed_in_principal() {
  local kind token payload oid
  if (( DRY_RUN )); then ME='<signed-in-principal>'; ME_TYPE=User; return 0; fi
  kind=$(query az account show --query user.type -o tsv)
  case "$kind" in
    user) ME_TYPE=User ;;
    servicePrincipal) ME_TYPE=ServicePrincipal ;;
    *) die "cannot tell the signed-in principal's type (az account show: '$kind')" ;;
  esac
  token=$(query az account get-access-token --query accessToken -o tsv)
  payload=$(printf '%s' "$token" | cut -d. -f2 | tr '_-' '/+')
  while (( ${#payload} % 4 )); do payload="$payload="; done
  oid=$(printf '%s' "$payload" | base64 -d 2>/dev/null | grep -o '"oid" *: *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true)
  [[ "$oid" =~ ^[0-9a-fA-F-]{36}$ ]] || die "cannot read the signed-in principal's object id from its access token"
  ME="$oid"
}

store_secrets() {
  local key
  signed_in_principal
  ensure_role "$ME" "$ME_TYPE" "Key Vault Secrets Officer"
  # RBAC assignments take a while to reach the vault's data plane: poll until we may list secrets.
  wait_until "the Key Vault Secrets Officer role to propagate" az keyvault secret list --vault-name "$VAULT" --output none
  for key in "${SECRET_KEYS[@]}"; do
    [[ -n "${SECRETS[$key]:-}" ]] && put_secret "$key"
  done
  return 0
}

ensure_plan() {
  local burst
  if exists az functionapp plan show --name "$PLAN" --resource-group "$RESOURCE_GROUP"; then
    burst=$(query az functionapp plan show --name "$PLAN" --resource-group "$RESOURCE_GROUP" \
      --query maximumElasticWorkerCount -o tsv)
    if [[ "$burst" != "$MAX_BURST" ]]; then
      change "update plan burst" az functionapp plan update --name "$PLAN" --resource-group "$RESOURCE_GROUP" \
        --max-burst "$MAX_BURST" --output none >/dev/null
      log "plan $PLAN max burst $burst -> $MAX_BURST"
    else
      log "plan $PLAN exists"
    fi
  else
    change "create Premium plan" az functionapp plan create --name "$PLAN" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --sku "$PLAN_SKU" --is-linux true --max-burst "$MAX_BURST" --tags "${TAGS[@]}" \
      --output none >/dev/null
    did create "plan $PLAN ($PLAN_SKU, Linux, max burst $MAX_BURST)" created
  fi
}

# The always-ready group of the entry function on Flex: a function of its own for the Kafka trigger, the
# shared `http` group for the HTTP function the sink connector calls.
always_ready_name() {
  if [[ "$ENTRY" == "trigger" ]]; then printf 'function:%s' "$TRIGGER_FUNCTION"; else printf 'http'; fi
}

create_app() {
  if [[ "$HOSTING_PLAN" == "flex" ]]; then
    # Flex Consumption: the CLI creates the plan with the app (--plan and --flexconsumption-location exclude each
    # other). Deployment storage is a blob container in our storage account, reached with the app's own identity
    # (the CLI grants it Storage Blob Data Contributor), so no account key is kept for deployments.
    local ready=()
    (( ALWAYS_READY > 0 )) && ready=(--always-ready-instances "$(always_ready_name)=$ALWAYS_READY")
    change "create function app" az functionapp create --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --storage-account "$STORAGE" --flexconsumption-location "$LOCATION" --runtime python --runtime-version "$PYTHON_VERSION" \
      --instance-memory "$INSTANCE_MEMORY" --maximum-instance-count "$MAX_INSTANCES" "${ready[@]}" \
      --deployment-storage-auth-type SystemAssignedIdentity --assign-identity '[system]' --disable-app-insights true \
      --tags "${TAGS[@]}" --output none >/dev/null
    did create "function app $APP (Flex Consumption, Linux, Python $PYTHON_VERSION, ${INSTANCE_MEMORY} MB, at most $MAX_INSTANCES instances)" created
  else
    change "create function app" az functionapp create --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --plan "$PLAN" --storage-account "$STORAGE" --runtime python --runtime-version "$PYTHON_VERSION" --functions-version 4 \
      --os-type Linux --assign-identity '[system]' --disable-app-insights true --tags "${TAGS[@]}" \
      --output none >/dev/null
    did create "function app $APP (Elastic Premium plan $PLAN, Linux, Python $PYTHON_VERSION)" created
  fi
}

ensure_app() {
  local farm running
  if exists az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP"; then
    farm=$(query az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query serverFarmId -o tsv)
    log "function app $APP exists"
    # The plan cannot be changed in place here (Flex apps have a plan of their own): say so instead of guessing.
    if [[ "$HOSTING_PLAN" == "flex" && "${farm,,}" == */serverfarms/"${PLAN,,}" ]]; then
      die "function app $APP runs on the Elastic Premium plan $PLAN: run --plan premium, or --destroy first"
    fi
    if [[ "$HOSTING_PLAN" == "premium" && "${farm,,}" != */serverfarms/"${PLAN,,}" ]]; then
      die "function app $APP is not on the Elastic Premium plan $PLAN (a Flex app?): run --plan flex, or --destroy first"
    fi
    # Nor its Python: a changed runtime under a running Kafka trigger is a migration, not a setting.
    running=$(app_python_version)
    if [[ "$running" != "$PYTHON_VERSION" ]]; then
      die "function app $APP runs Python $running, not --python-version $PYTHON_VERSION: run with --python-version $running, or --destroy first (docs/deploy.md, Python versions)"
    fi
  else
    create_app
  fi
  PRINCIPAL=$(read_or '<app-principal>' az functionapp identity show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query principalId -o tsv 2>/dev/null || true)
  if [[ -z "$PRINCIPAL" ]]; then
    PRINCIPAL=$(change "assign identity" az functionapp identity assign --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --query principalId -o tsv)
  fi
  ensure_role "$PRINCIPAL" ServicePrincipal "Key Vault Secrets User"
}

# The Flex plan the CLI made carries no tags: tag it, so that --destroy finds it when the group is not ours.
ensure_flex_plan_tagged() {
  local farm tagged
  farm=$(read_or '<flex-plan-id>' az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query serverFarmId -o tsv)
  tagged=$(read_or '' az resource show --ids "$farm" --query tags.deployment -o tsv)
  if [[ "$tagged" != "$DEPLOYMENT" ]]; then
    change "tag the Flex plan" az resource tag --ids "$farm" --is-incremental --tags "${TAGS[@]}" --output none >/dev/null
    did tag "the Flex plan ${farm##*/} (deployment=$DEPLOYMENT)" tagged
  fi
}

# ---- monitoring ------------------------------------------------------------------------------------------

# Resources the user asked us to reuse must exist (read-only; before anything is created). Never tagged, never
# deleted by --destroy.
check_reused() {
  (( DRY_RUN || DESTROY )) && return 0
  if [[ -n "$WORKSPACE_ID" ]] && ! exists az resource show --ids "$WORKSPACE_ID" --query id -o tsv; then
    die "--workspace-id: no such Log Analytics workspace (or no access to it): $WORKSPACE_ID"
  fi
  if [[ -n "$APP_INSIGHTS_ID" ]] && ! exists az resource show --ids "$APP_INSIGHTS_ID" --query id -o tsv; then
    die "--app-insights-id: no such Application Insights component (or no access to it): $APP_INSIGHTS_ID"
  fi
  return 0
}

# The Log Analytics workspace a new Application Insights sends to (workspace-based), unless one is reused.
ensure_workspace() {
  WORKSPACE_RESOURCE_ID=""
  if [[ -n "$APP_INSIGHTS_ID" ]]; then
    COMPONENT_ID="$APP_INSIGHTS_ID"
    log "Application Insights: reusing ${APP_INSIGHTS_ID##*/} (and its workspace)"
    return 0
  fi
  COMPONENT_ID="/subscriptions/$SUBSCRIPTION/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.Insights/components/$COMPONENT"
  if [[ -n "$WORKSPACE_ID" ]]; then
    WORKSPACE_RESOURCE_ID="$WORKSPACE_ID"
    log "Log Analytics workspace: reusing ${WORKSPACE_ID##*/}"
    return 0
  fi
  if exists az monitor log-analytics workspace show --name "$WORKSPACE" --resource-group "$RESOURCE_GROUP"; then
    log "Log Analytics workspace $WORKSPACE exists"
  else
    change "create Log Analytics workspace" az monitor log-analytics workspace create --name "$WORKSPACE" \
      --resource-group "$RESOURCE_GROUP" --location "$LOCATION" --sku PerGB2018 --retention-time 30 \
      --tags "${TAGS[@]}" --output none >/dev/null
    did create "Log Analytics workspace $WORKSPACE" created
  fi
  WORKSPACE_RESOURCE_ID=$(read_or \
    "/subscriptions/$SUBSCRIPTION/resourceGroups/$RESOURCE_GROUP/providers/Microsoft.OperationalInsights/workspaces/$WORKSPACE" \
    az monitor log-analytics workspace show --name "$WORKSPACE" --resource-group "$RESOURCE_GROUP" --query id -o tsv)
}

# The receivers as they may be shown: addresses, and the webhook's host only (its path may hold a token).
describe_receivers() {
  local parts=()
  [[ -n "$ALERT_EMAIL" ]] && parts+=("e-mail ${ALERT_EMAIL//,/, }")
  if [[ -n "$ALERT_WEBHOOK" ]]; then
    local host="${ALERT_WEBHOOK#https://}"
    parts+=("webhook https://${host%%/*}/...")
  fi
  (( ${#parts[@]} )) || parts=("no receivers: the alerts show in the portal only")
  printf '%s' "${parts[0]}"
  (( ${#parts[@]} < 2 )) || printf '; %s' "${parts[@]:1}"
}

# The action group every alert notifies. Its receivers' digest is a tag: a re-run with the same receivers changes
# nothing; other receivers replace the group (create is a PUT). The webhook URL reaches az from a private file
# (the CLI reads an argument '@FILE' from the file), so it is never on a command line or printed.
ensure_action_group() {
  local want current actions=() emails email i=0 hook
  want=$(printf '%s|%s' "$ALERT_EMAIL" "$ALERT_WEBHOOK" | sha256sum | cut -c1-16)
  current=$(read_or '' az monitor action-group show --name "$ACTION_GROUP" --resource-group "$RESOURCE_GROUP" \
    --query tags.receivers -o tsv) || current=""
  if [[ "$current" == "$want" ]]; then
    log "action group $ACTION_GROUP matches ($(describe_receivers))"
  else
    if [[ -n "$ALERT_EMAIL" ]]; then
      IFS=',' read -ra emails <<<"$ALERT_EMAIL"
      for email in "${emails[@]}"; do
        i=$((i + 1))
        actions+=(--action email "email-$i" "$email" usecommonalertschema)
      done
    fi
    if [[ -n "$ALERT_WEBHOOK" ]]; then
      hook="$WORK_DIR/alert-webhook"
      (umask 077 && printf '%s' "$ALERT_WEBHOOK" > "$hook")
      actions+=(--action webhook webhook "@$hook" usecommonalertschema)
    fi
    change "create action group" az monitor action-group create --name "$ACTION_GROUP" \
      --resource-group "$RESOURCE_GROUP" --short-name "${PREFIX:0:12}" "${actions[@]}" \
      --tags "${TAGS[@]}" "receivers=$want" --output none >/dev/null
    rm -f "$WORK_DIR/alert-webhook"
    did create "action group $ACTION_GROUP ($(describe_receivers))" "created"
  fi
  [[ -n "$ALERT_EMAIL$ALERT_WEBHOOK" ]] \
    || log "no --alert-email or --alert-webhook: the alerts notify nobody (they still show in the portal)"
  ACTION_GROUP_ID=$(read_or \
    "/subscriptions/$SUBSCRIPTION/resourceGroups/$RESOURCE_GROUP/providers/microsoft.insights/actionGroups/$ACTION_GROUP" \
    az monitor action-group show --name "$ACTION_GROUP" --resource-group "$RESOURCE_GROUP" --query id -o tsv)
}

# The template's parameters, one KEY=VALUE a line (tests/deploy checks them against the template's own list).
monitoring_parameters() {
  printf '%s\n' \
    "location=$LOCATION" \
    "tags={\"${TOOL_TAG%%=*}\":\"${TOOL_TAG#*=}\",\"deployment\":\"$DEPLOYMENT\"}" \
    "componentName=$COMPONENT" \
    "existingComponentId=$APP_INSIGHTS_ID" \
    "workspaceId=$WORKSPACE_RESOURCE_ID" \
    "actionGroupId=$ACTION_GROUP_ID" \
    "lagAlertName=${ALERTS[0]}" \
    "deadLetterAlertName=${ALERTS[1]}" \
    "failedBatchAlertName=${ALERTS[2]}" \
    "stalledAlertName=${ALERTS[3]}" \
    "deadLetterThreshold=$DEAD_LETTER_THRESHOLD" \
    "workbookId=$WORKBOOK_ID" \
    "workbookDisplayName=Trade settlement ($DEPLOYMENT)"
}

# Application Insights (unless reused), the four alert rules and the workbook: one ARM deployment, run only when
# the template, the workbook or a parameter changed (their digest is a parameter, read back from the deployment).
ensure_monitoring() {
  local params=() sha current state what
  mapfile -t params < <(monitoring_parameters)
  sha=$({ cat "$MONITORING_TEMPLATE" "$MONITORING_WORKBOOK"; printf '%s\n' "${params[@]}"; } | sha256sum | cut -c1-16)
  current=$(read_or '' az deployment group show --resource-group "$RESOURCE_GROUP" --name "$MONITORING_DEPLOYMENT" \
    --query properties.parameters.contentSha.value -o tsv) || current=""
  state=$(read_or '' az deployment group show --resource-group "$RESOURCE_GROUP" --name "$MONITORING_DEPLOYMENT" \
    --query properties.provisioningState -o tsv) || state=""
  what="alert rules ${ALERTS[*]}, workbook $WORKBOOK_ID"
  if [[ -n "$APP_INSIGHTS_ID" ]]; then
    what="on Application Insights ${APP_INSIGHTS_ID##*/}: $what"
  else
    what="Application Insights $COMPONENT (workspace-based), $what"
  fi
  if [[ "$current" == "$sha" && "$state" == "Succeeded" ]]; then
    log "monitoring matches: $what"
    return 0
  fi
  change "deploy monitoring" az deployment group create --resource-group "$RESOURCE_GROUP" \
    --name "$MONITORING_DEPLOYMENT" --template-file "$MONITORING_TEMPLATE" \
    --parameters "${params[@]}" "workbookContent=@$MONITORING_WORKBOOK" "contentSha=$sha" \
    --no-prompt true --output none >/dev/null
  did deploy "monitoring: $what" "deployed"
}

# The component's connection string, kept in a private file: the app setting is set from it with '@FILE', so the
# string is never on a command line or printed.
read_connection_string() {
  CONNECTION_FILE="$WORK_DIR/appinsights-connection"
  if (( DRY_RUN )); then
    CONNECTION_STRING="<connection string of ${COMPONENT_ID##*/}>"
    return 0
  fi
  CONNECTION_STRING=$(query az resource show --ids "$COMPONENT_ID" --query properties.ConnectionString -o tsv)
  [[ "$CONNECTION_STRING" == *InstrumentationKey=* ]] \
    || die "Application Insights ${COMPONENT_ID##*/} returned no connection string"
  (umask 077 && printf '%s' "$CONNECTION_STRING" > "$CONNECTION_FILE")
}

ensure_observability() {
  ensure_workspace
  ensure_action_group
  ensure_monitoring
  read_connection_string
}

desired_settings() {
  local key trigger_off=false sink_off=true
  if [[ "$ENTRY" == "connector" ]]; then trigger_off=true; sink_off=false; fi
  for key in "${SECRET_KEYS[@]}"; do
    [[ -n "${SECRETS[$key]:-}" ]] && printf '%s=@Microsoft.KeyVault(SecretUri=%s/secrets/%s/)\n' "$key" "$VAULT_URI" "$(secret_name "$key")"
  done
  printf '%s\n' \
    "SCHEMA_REGISTRY_URL=$SCHEMA_REGISTRY_URL" \
    "KAFKA_CONSUMER_GROUP=$CONSUMER_GROUP" \
    "KAFKA_LAG_THRESHOLD=$LAG_THRESHOLD" \
    "SETTLEMENT_REPAIR_SCHEDULE=$REPAIR_SCHEDULE" \
    "KAFKA_TRIGGER_PROTOCOL=SaslSsl" \
    "USER_TRADES_TOPIC=user_trades" \
    "SETTLEMENTS_TOPIC=trade-settlements" \
    "DEAD_LETTER_TOPIC=user_trades-dlq" \
    "APPLICATIONINSIGHTS_CONNECTION_STRING=$CONNECTION_STRING" \
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true" \
    "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME=settlement" \
    "AzureWebJobs.$TRIGGER_FUNCTION.Disabled=$trigger_off" \
    "AzureWebJobs.$SINK_FUNCTION.Disabled=$sink_off"
  if [[ "$AUTH" == "entra" ]]; then keyless_settings; else printf '%s\n' "KAFKA_TRIGGER_AUTH_MODE=Plain"; fi
}

ensure_settings() {
  local current wanted=() line name value
  current=$(read_or '' az functionapp config appsettings list --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query '[].[name,value]' -o tsv)
  while IFS= read -r line; do
    name="${line%%=*}"; value="${line#*=}"
    if ! grep -qxF "$(printf '%s\t%s' "$name" "$value")" <<<"$current"; then
      # The connection string goes to az from its private file, never as an argument.
      [[ "$name" == APPLICATIONINSIGHTS_CONNECTION_STRING ]] && line="$name=@$CONNECTION_FILE"
      wanted+=("$line")
    fi
  done < <(desired_settings)
  if (( ${#wanted[@]} )); then
    change "set app settings" az functionapp config appsettings set --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --settings "${wanted[@]}" --output none >/dev/null
    did set "app settings $(printf '%s ' "${wanted[@]%%=*}")" "updated (entry path: $ENTRY)"
  else
    log "app settings match (entry path: $ENTRY)"
  fi
}

# Premium only: the Kafka trigger scales on Elastic Premium only with runtime scale monitoring on. Flex has no such
# switch: its platform scales each function (the Kafka trigger's own, target-based scaler) on its own instances.
ensure_scale_monitoring() {
  local enabled
  enabled=$(read_or false az resource show --resource-group "$RESOURCE_GROUP" --name "$APP/config/web" \
    --resource-type Microsoft.Web/sites --query properties.functionsRuntimeScaleMonitoringEnabled -o tsv)
  if [[ "$enabled" != "true" ]]; then
    change "enable runtime scale monitoring" az resource update --resource-group "$RESOURCE_GROUP" --name "$APP/config/web" \
      --set properties.functionsRuntimeScaleMonitoringEnabled=1 --resource-type Microsoft.Web/sites --output none >/dev/null
    did enable "runtime scale monitoring" enabled
  else
    log "runtime scale monitoring is on"
  fi
}

# Flex only: instance memory, maximum instance count, always-ready instances and deployment-storage authentication
# as asked, changed only where they differ (a re-run changes nothing; a changed --entry moves the always-ready
# instances to the function that now runs).
ensure_flex_scale() {
  local memory maximum ready wanted stale=() name count
  memory=$(read_or '' az functionapp scale config show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query instanceMemoryMB -o tsv)
  maximum=$(read_or '' az functionapp scale config show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query maximumInstanceCount -o tsv)
  if [[ "$memory" != "$INSTANCE_MEMORY" || "$maximum" != "$MAX_INSTANCES" ]]; then
    change "set scale config" az functionapp scale config set --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --instance-memory "$INSTANCE_MEMORY" --maximum-instance-count "$MAX_INSTANCES" --output none >/dev/null
    did set "scale config: ${INSTANCE_MEMORY} MB instances, at most $MAX_INSTANCES" set
  fi
  ready=$(read_or '' az functionapp scale config show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query 'alwaysReady[].[name,instanceCount]' -o tsv)
  wanted="$(always_ready_name)"
  while IFS=$'\t' read -r name count; do
    [[ -z "$name" ]] && continue
    if [[ "$name" != "$wanted" || "$ALWAYS_READY" == "0" ]]; then stale+=("$name"); fi
  done <<<"$ready"
  if (( ALWAYS_READY > 0 )) && ! grep -qxF "$(printf '%s\t%s' "$wanted" "$ALWAYS_READY")" <<<"$ready"; then
    change "set always-ready instances" az functionapp scale config always-ready set --name "$APP" \
      --resource-group "$RESOURCE_GROUP" --settings "$wanted=$ALWAYS_READY" --output none >/dev/null
    did set "always-ready instances $wanted=$ALWAYS_READY" set
  fi
  if (( ${#stale[@]} )); then
    change "delete always-ready instances" az functionapp scale config always-ready delete --name "$APP" \
      --resource-group "$RESOURCE_GROUP" --setting-names "${stale[@]}" --output none >/dev/null
    did delete "always-ready instances ${stale[*]}" deleted
  fi
  local auth
  auth=$(read_or SystemAssignedIdentity az functionapp deployment config show --name "$APP" \
    --resource-group "$RESOURCE_GROUP" --query storage.authentication.type -o tsv)
  if [[ "$auth" != "SystemAssignedIdentity" ]]; then
    change "set deployment storage authentication" az functionapp deployment config set --name "$APP" \
      --resource-group "$RESOURCE_GROUP" --deployment-storage-auth-type SystemAssignedIdentity --output none >/dev/null
    did set "deployment storage authentication to the app's identity (was $auth)" set
  fi
  return 0
}

# Key Vault references resolve only once the app identity's role has reached the vault's data plane; until then
# the app sees the reference text. Poll the platform's own status of every reference; restart the app now and
# then so that it resolves them again (a re-run does the same for references a previous run left unresolved).
references_resolved() {
  local unresolved
  unresolved=$(query az rest --method get \
    --url "https://management.azure.com$(query_app_id)/config/configreferences/appsettings?api-version=2022-03-01" \
    --query "length(value[?properties.status!='Resolved'])" -o tsv)
  [[ "$unresolved" == "0" ]]
}

ensure_references_resolved() {
  (( DRY_RUN )) && return 0
  local deadline=$((SECONDS + WAIT_TIMEOUT)) polls=0
  until references_resolved; do
    (( SECONDS < deadline )) || die "timed out after ${WAIT_TIMEOUT}s waiting for Key Vault references to resolve"
    if (( polls % 6 == 0 )); then
      change "restart function app" az functionapp restart --name "$APP" --resource-group "$RESOURCE_GROUP" >/dev/null
      log "Key Vault references not resolved yet: restarted $APP"
    fi
    polls=$((polls + 1))
    sleep "$POLL_SECONDS"
  done
  log "Key Vault references resolved"
}

app_running() { [[ "$(query az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query state -o tsv)" == "Running" ]]; }

package_sha() {
  (cd "$ROOT_DIR" && cat function_app.py host.json requirements.txt settlement/*.py settlement/*/*.py | sha256sum | cut -c1-16)
}

# Core Tools publish to either plan: on Flex Consumption `func azure functionapp publish` deploys the package to the
# app's deployment container (One Deploy) and the platform builds it remotely; on Premium it uses the SCM site.
publish() {
  command -v func >/dev/null 2>&1 || (( DRY_RUN )) || die "Azure Functions Core Tools (func) not found: install them to publish"
  wait_until "function app $APP to be Running" app_running
  local sha deployed
  sha=$(package_sha)
  deployed=$(read_or '' az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query tags.packageSha -o tsv)
  if [[ "$deployed" == "$sha" ]] && (( ! FORCE_PUBLISH )); then
    log "code $sha already published"
    return 0
  fi
  if (( DRY_RUN )); then
    printf '[dry-run] (cd %s && func azure functionapp publish %s --python --build remote)\n' "$ROOT_DIR" "$APP"
  else
    (cd "$ROOT_DIR" && func azure functionapp publish "$APP" --python --build remote) \
      || die "step 'publish' failed: func azure functionapp publish $APP"
  fi
  change "tag published code" az resource tag --ids "$(query_app_id)" --is-incremental --tags "packageSha=$sha" \
    --output none >/dev/null
  did publish "$APP ($sha)" "published ($sha)"
}

query_app_id() { read_or '<app-id>' az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query id -o tsv; }

# ---- what to do next -------------------------------------------------------------------------------------

# The Kafka ACLs (Confluent Cloud), one row per resource. The function's rows are the table in docs/guarantees.md
# ("Confluent Cloud ACLs"; tests/deploy checks the two agree); the redrive tool's follow
# scripts/dlq_redrive.py (its default consumer groups dlq-redrive-<hash>, transactional ids <group>-<dlq>).
acl_rows() {
  local g="$CONSUMER_GROUP"
  printf '%s\n' \
    "function|topic|user_trades|literal|read,describe" \
    "function|topic|trade-settlements|literal|write,describe" \
    "function|topic|user_trades-dlq|literal|write,describe" \
    "function|consumer-group|$g|literal|read,describe" \
    "function|consumer-group|$g.settled|literal|read,describe" \
    "function|transactional-id|$g.settled.|prefixed|write,describe" \
    "function|cluster-scope||literal|idempotent-write" \
    "redrive|topic|user_trades-dlq|literal|read,describe" \
    "redrive|topic|user_trades|literal|write,describe" \
    "redrive|consumer-group|dlq-redrive-|prefixed|read,describe" \
    "redrive|transactional-id|dlq-redrive-|prefixed|write,describe" \
    "redrive|cluster-scope||literal|idempotent-write"
}

print_acls() {
  local who kind name pattern ops resource prefix
  echo "Kafka ACLs (consumer group $CONSUMER_GROUP). The function's service account, the exactly-once ledger included"
  echo "(consumer group $CONSUMER_GROUP.settled, transactional ids $CONSUMER_GROUP.settled.<topic>.<partition>), and the"
  echo "redrive tool's (scripts/dlq_redrive.py; with --group G it needs group G and transactional id G-user_trades-dlq):"
  while IFS='|' read -r who kind name pattern ops; do
    resource="--$kind"; [[ -n "$name" ]] && resource="--$kind $name"
    prefix=""; [[ "$pattern" == "prefixed" ]] && prefix=" --prefix"
    local sa='<function-service-account>'
    [[ "$who" == "redrive" ]] && sa='<redrive-service-account>'
    echo "  confluent kafka acl create --allow --service-account $sa --operations $ops $resource$prefix"
  done < <(acl_rows)
}

next_steps() {
  local host key_cmd
  host=$(read_or "$APP.azurewebsites.net" az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query defaultHostName -o tsv)
  key_cmd="az functionapp function keys list --name $APP --resource-group $RESOURCE_GROUP --function-name $SINK_FUNCTION --query default -o tsv"
  echo
  echo "Next steps"
  echo "  Function app: https://$host (entry path: $ENTRY; the other function is disabled by its app setting)"
  echo "  Sink-connector URL: https://$host/api/settle; its key is never printed here, this reads it:"
  echo "    $key_cmd"
  echo "  Apply the ksqlDB statements (with KSQLDB_API_KEY/SECRET, CONFLUENT_CLOUD_API_KEY/SECRET, KAFKA_API_KEY/SECRET"
  echo "  in the environment; --entry $ENTRY applies ksql/03-sink-connector.sql only for connector):"
  if [[ "$ENTRY" == "connector" ]]; then
    echo "    export FUNCTION_URL=https://$host/api/settle"
    echo "    export FUNCTION_KEY=\"\$($key_cmd)\""
  fi
  echo "    .venv/bin/python scripts/ksql_apply.py --server https://<ksqldb-endpoint> --bootstrap-servers <KAFKA_BOOTSTRAP_SERVERS> --entry $ENTRY"
  echo "  Smoke check: .venv/bin/python scripts/smoke_check.py --bootstrap-servers <KAFKA_BOOTSTRAP_SERVERS> (see docs/quickstart-confluent-cloud.md)"
  if [[ "$AUTH" == "entra" ]]; then
    echo "  Confluent Cloud access: the identity pools' role bindings printed above (no service account, no ACLs)"
  else
    print_acls | sed 's/^/  /'
  fi
}

# ---- keyless (--auth entra) ------------------------------------------------------------------------------

# The user-assigned managed identity our clients sign in with, created or reused: its resource id, its client id
# (ENTRA_CLIENT_ID) and its principal (object) id, which the Confluent identity pool's filter names.
ensure_identity() {
  IDENTITY="${PREFIX}-${SUFFIX}-id"
  if exists az identity show --name "$IDENTITY" --resource-group "$RESOURCE_GROUP"; then
    log "managed identity $IDENTITY exists"
  else
    change "create managed identity" az identity create --name "$IDENTITY" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --tags "${TAGS[@]}" --output none >/dev/null
    did create "user-assigned managed identity $IDENTITY" created
  fi
  IDENTITY_ID=$(read_or '<identity-id>' az identity show --name "$IDENTITY" --resource-group "$RESOURCE_GROUP" \
    --query id -o tsv)
  IDENTITY_CLIENT=$(read_or '<identity-client-id>' az identity show --name "$IDENTITY" \
    --resource-group "$RESOURCE_GROUP" --query clientId -o tsv)
  IDENTITY_PRINCIPAL=$(read_or '<identity-object-id>' az identity show --name "$IDENTITY" \
    --resource-group "$RESOURCE_GROUP" --query principalId -o tsv)
}

# The app registration the trigger signs in as (OIDC client credentials: the extension cannot use a managed
# identity), whose application id URI is the resource every token is asked for, the trigger's and the managed
# identity's. Found by display name, else created, with v2 access tokens: issuer .../<tenant>/v2.0 and audience
# the application id, as Confluent Cloud's Entra identity provider reads them.
ensure_trigger_app() {
  TRIGGER_APP_NAME="${PREFIX}-${SUFFIX}-kafka-trigger"
  TENANT=$(read_or '<tenant-id>' az account show --query tenantId -o tsv)
  TRIGGER_APP_ID=$(read_or '' az ad app list --display-name "$TRIGGER_APP_NAME" --query "[0].appId" -o tsv)
  if [[ -z "$TRIGGER_APP_ID" ]]; then
    TRIGGER_APP_ID=$(change "create app registration" az ad app create --display-name "$TRIGGER_APP_NAME" \
      --sign-in-audience AzureADMyOrg --query appId -o tsv)
    (( DRY_RUN )) && TRIGGER_APP_ID='<trigger-app-id>'
    change "set the app registration's id URI" az ad app update --id "$TRIGGER_APP_ID" \
      --identifier-uris "api://$TRIGGER_APP_ID" --requested-access-token-version 2 >/dev/null
    did create "app registration $TRIGGER_APP_NAME (api://$TRIGGER_APP_ID, v2 tokens)" created
  else
    log "app registration $TRIGGER_APP_NAME exists"
  fi
  AUDIENCE="api://$TRIGGER_APP_ID"
  if exists az ad sp show --id "$TRIGGER_APP_ID"; then
    log "service principal of $TRIGGER_APP_NAME exists"
  else
    change "create service principal" az ad sp create --id "$TRIGGER_APP_ID" --output none >/dev/null
    did create "the service principal of $TRIGGER_APP_NAME" created
  fi
  TRIGGER_PRINCIPAL=$(read_or '<trigger-object-id>' az ad sp show --id "$TRIGGER_APP_ID" --query id -o tsv)
}

# A new client secret of the trigger's app registration (a year long, added beside any other), straight from az
# into a private file and from there into the vault: never an argument, never printed.
new_trigger_secret() {
  local tmp name
  name=$(secret_name "$TRIGGER_SECRET_KEY")
  tmp=$(mktemp "$WORK_DIR/secret.XXXXXX")
  change "make a client secret for the trigger" az ad app credential reset --id "$TRIGGER_APP_ID" --append \
    --display-name "kafka-trigger-$(date -u +%Y%m%d%H%M%S)" --years 1 --query password -o tsv >"$tmp"
  change "store secret $name" az keyvault secret set --vault-name "$VAULT" --name "$name" --file "$tmp" \
    --encoding utf-8 --output none >/dev/null
  rm -f "$tmp"
  did store "a new client secret of $TRIGGER_APP_NAME as vault secret $name" stored
}

# The deployment's one secret: made on the first run; a vault that holds it keeps it (--rotate-trigger-secret).
ensure_trigger_credential() {
  if exists az keyvault secret show --vault-name "$VAULT" --name "$(secret_name "$TRIGGER_SECRET_KEY")" --query id -o tsv
  then
    log "the trigger's client secret is in the vault"
  else
    new_trigger_secret
  fi
}

# The identity on the app, with what it needs: secrets (Key Vault references resolve with it) and the storage
# account's blobs, queues and tables (AzureWebJobsStorage without an account key).
ensure_keyless_grants() {
  local assigned storage_id role current
  assigned=$(read_or '' az functionapp identity show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query "userAssignedIdentities" -o json)
  if [[ "${assigned,,}" != *"${IDENTITY_ID,,}"* ]]; then
    change "assign the managed identity" az functionapp identity assign --name "$APP" \
      --resource-group "$RESOURCE_GROUP" --identities "$IDENTITY_ID" --output none >/dev/null
    did assign "managed identity $IDENTITY to $APP" assigned
  fi
  ensure_role "$IDENTITY_PRINCIPAL" ServicePrincipal "Key Vault Secrets User"
  storage_id=$(read_or '<storage-id>' az storage account show --name "$STORAGE" --resource-group "$RESOURCE_GROUP" \
    --query id -o tsv)
  for role in "${STORAGE_ROLES[@]}"; do
    ensure_role "$IDENTITY_PRINCIPAL" ServicePrincipal "$role" "$storage_id"
  done
  current=$(read_or '' az resource show --resource-group "$RESOURCE_GROUP" --name "$APP" \
    --resource-type Microsoft.Web/sites --query properties.keyVaultReferenceIdentity -o tsv)
  if [[ "$current" != "$IDENTITY_ID" ]]; then
    change "resolve Key Vault references with the identity" az resource update --resource-group "$RESOURCE_GROUP" \
      --name "$APP" --resource-type Microsoft.Web/sites --set "properties.keyVaultReferenceIdentity=$IDENTITY_ID" \
      --output none >/dev/null
    did set "Key Vault references to resolve with $IDENTITY" set
  fi
}

# The app settings of keyless (KEY=VALUE lines; the trigger's secret as a Key Vault reference).
keyless_settings() {
  printf '%s=@Microsoft.KeyVault(SecretUri=%s/secrets/%s/)\n' "$TRIGGER_SECRET_KEY" "$VAULT_URI" \
    "$(secret_name "$TRIGGER_SECRET_KEY")"
  printf '%s\n' \
    "KAFKA_AUTH=entra" \
    "SCHEMA_REGISTRY_AUTH=entra" \
    "ENTRA_CLIENT_ID=$IDENTITY_CLIENT" \
    "ENTRA_TOKEN_SCOPE=$AUDIENCE/.default" \
    "KAFKA_LOGICAL_CLUSTER=$KAFKA_CLUSTER_ID" \
    "CONFLUENT_IDENTITY_POOL_ID=$IDENTITY_POOL_ID" \
    "SCHEMA_REGISTRY_LOGICAL_CLUSTER=$REGISTRY_CLUSTER_ID" \
    "KAFKA_TRIGGER_AUTH_MODE=OAuthBearer" \
    "KAFKA_TRIGGER_OAUTH_CLIENT_ID=$TRIGGER_APP_ID" \
    "KAFKA_TRIGGER_OAUTH_TOKEN_ENDPOINT=https://login.microsoftonline.com/$TENANT/oauth2/v2.0/token" \
    "KAFKA_TRIGGER_OAUTH_SCOPE=$AUDIENCE/.default" \
    "KAFKA_TRIGGER_OAUTH_EXTENSIONS=logicalCluster=$KAFKA_CLUSTER_ID,identityPoolId=$TRIGGER_POOL_ID" \
    "AzureWebJobsStorage__accountName=$STORAGE" \
    "AzureWebJobsStorage__credential=managedidentity" \
    "AzureWebJobsStorage__clientId=$IDENTITY_CLIENT"
}

# The connection string with the account key goes once the identity-based connection is set.
drop_storage_key_setting() {
  local current
  current=$(read_or '' az functionapp config appsettings list --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query "[?name=='AzureWebJobsStorage'].name" -o tsv)
  if [[ -n "$current" ]] || (( DRY_RUN )); then
    change "remove the storage connection string" az functionapp config appsettings delete --name "$APP" \
      --resource-group "$RESOURCE_GROUP" --setting-names AzureWebJobsStorage --output none >/dev/null
    did remove "AzureWebJobsStorage (the account key): the identity-based connection replaces it" removed
  fi
}

# Confluent Cloud RBAC (pool|resource type|name|pattern|role): the app's pool, and the trigger's read-only one.
confluent_rows() {
  local g="$CONSUMER_GROUP"
  printf '%s\n' \
    "app|Topic|user_trades|literal|DeveloperRead" \
    "app|Topic|trade-settlements|literal|DeveloperWrite" \
    "app|Topic|user_trades-dlq|literal|DeveloperWrite" \
    "app|Group|$g|literal|DeveloperRead" \
    "app|Group|$g.settled|literal|DeveloperRead" \
    "app|Transactional-Id|$g.settled.|prefixed|DeveloperWrite" \
    "app|Subject|user_trades-value|literal|DeveloperRead" \
    "app|Subject|trade-settlements-value|literal|DeveloperWrite" \
    "trigger|Topic|user_trades|literal|DeveloperRead" \
    "trigger|Group|$g|literal|DeveloperRead"
}

# What a user sets up in Confluent Cloud for keyless, with the ids this run found or made.
print_confluent_setup() {
  local pool kind name pattern role principal scope issuer="https://login.microsoftonline.com/$TENANT/v2.0"
  echo "Confluent Cloud side of keyless (once; docs/security.md):"
  echo "  1. an identity provider for tenant $TENANT:"
  echo "     confluent iam provider create entra-$PREFIX --issuer-uri $issuer \\"
  echo "       --jwks-uri https://login.microsoftonline.com/$TENANT/discovery/v2.0/keys"
  echo "  2. two identity pools on it, each filtered on one principal's object id and the tokens' audience"
  echo "     (v2 tokens carry the application id $TRIGGER_APP_ID as aud):"
  echo "     confluent iam pool create $PREFIX-app --provider <provider-id> --identity-claim claims.sub \\"
  echo "       --filter 'claims.sub == \"$IDENTITY_PRINCIPAL\" && claims.aud == \"$TRIGGER_APP_ID\"'"
  echo "     confluent iam pool create $PREFIX-trigger --provider <provider-id> --identity-claim claims.sub \\"
  echo "       --filter 'claims.sub == \"$TRIGGER_PRINCIPAL\" && claims.aud == \"$TRIGGER_APP_ID\"'"
  echo "  3. role bindings (topics, consumer groups $CONSUMER_GROUP and $CONSUMER_GROUP.settled, transactional ids"
  echo "     $CONSUMER_GROUP.settled.<topic>.<partition>, registry subjects):"
  while IFS='|' read -r pool kind name pattern role; do
    principal="User:<$pool-pool-id>"
    [[ "$pool" == "app" && -n "$IDENTITY_POOL_ID" ]] && principal="User:$IDENTITY_POOL_ID"
    [[ "$pool" == "trigger" && -n "$TRIGGER_POOL_ID" ]] && principal="User:$TRIGGER_POOL_ID"
    scope="--cloud-cluster $KAFKA_CLUSTER_ID --kafka-cluster $KAFKA_CLUSTER_ID"
    [[ "$kind" == "Subject" ]] && scope="--schema-registry-cluster $REGISTRY_CLUSTER_ID"
    echo "     confluent iam rbac role-binding create --principal $principal --role $role --environment <env-id>" \
      "$scope --resource $kind:$name$([[ "$pattern" == prefixed ]] && printf ' --prefix')"
  done < <(confluent_rows)
  if [[ -z "$IDENTITY_POOL_ID" ]]; then
    echo "  then run this again with --identity-pool-id and --trigger-identity-pool-id to set the app up."
  fi
}

# --rotate-trigger-secret: the trigger's one secret, rotated with no trade lost or settled twice. A second client
# secret is added beside the first (both valid), stored as the vault secret's new version, and the app restarted
# so that every host reads the new version (the setting is a versionless reference); a host still on the old
# secret keeps its token until it expires and the exactly-once ledger fences whatever a recycle interrupts. Only
# after --rotation-overlap seconds are the older secrets removed.
rotate_trigger_secret() {
  local old key
  ensure_trigger_app
  old=$(read_or '<old-key-ids>' az ad app credential list --id "$TRIGGER_APP_ID" --query "[].keyId" -o tsv)
  new_trigger_secret
  change "restart function app" az functionapp restart --name "$APP" --resource-group "$RESOURCE_GROUP" >/dev/null
  did restart "$APP, so that its hosts read the new secret (the old one still valid)" restarted
  ensure_references_resolved
  if (( ! DRY_RUN )); then
    log "both secrets valid for ${ROTATION_OVERLAP}s while hosts move to the new one"
    sleep "$ROTATION_OVERLAP"
  fi
  for key in $old; do
    change "remove an older client secret" az ad app credential delete --id "$TRIGGER_APP_ID" --key-id "$key" >/dev/null
    did remove "the older client secret $key of $TRIGGER_APP_NAME" removed
  done
}

# ---- destroy ---------------------------------------------------------------------------------------------

destroy() {
  local group_tags ids farms
  if ! exists az group show --name "$RESOURCE_GROUP"; then
    log "resource group $RESOURCE_GROUP does not exist: nothing to destroy"
    return 0
  fi
  group_tags=$(query az group show --name "$RESOURCE_GROUP" --query "tags.deployment" -o tsv)
  if [[ "$group_tags" == "$DEPLOYMENT" ]]; then
    change "delete resource group" az group delete --name "$RESOURCE_GROUP" --yes --no-wait >/dev/null
    did delete "resource group $RESOURCE_GROUP (created by this script)" "deleting (created by this script)"
  else
    # The CLI (2.91.0) refuses --tag together with --resource-group: list by tag, keep this group's.
    ids=$(query az resource list --tag "deployment=$DEPLOYMENT" --query '[].[id,resourceGroup]' -o tsv \
      | awk -F '\t' -v g="$RESOURCE_GROUP" 'tolower($2) == tolower(g) { print $1 }')
    if [[ -z "$ids" ]]; then
      log "no resources tagged deployment=$DEPLOYMENT in $RESOURCE_GROUP"
      return 0
    fi
    # A plan cannot be deleted while an app is on it: the apps and the rest first, then the plans.
    farms=$(grep -i '/providers/Microsoft.Web/serverFarms/' <<<"$ids" || true)
    ids=$(grep -vi '/providers/Microsoft.Web/serverFarms/' <<<"$ids" || true)
    # shellcheck disable=SC2086 # one id per word
    [[ -z "$ids" ]] || change "delete tagged resources" az resource delete --ids $ids >/dev/null
    # shellcheck disable=SC2086 # one id per word
    [[ -z "$farms" ]] || change "delete tagged plans" az resource delete --ids $farms >/dev/null
    # The monitoring deployment's record, or a later run would take its digest for resources that are gone.
    if exists az deployment group show --resource-group "$RESOURCE_GROUP" --name "$MONITORING_DEPLOYMENT"; then
      change "delete the monitoring deployment record" az deployment group delete --resource-group "$RESOURCE_GROUP" \
        --name "$MONITORING_DEPLOYMENT" >/dev/null
    fi
    did delete "resources tagged deployment=$DEPLOYMENT; resource group $RESOURCE_GROUP was not created here and stays" \
      "deleted"
  fi
}

# ---- main ------------------------------------------------------------------------------------------------

main() {
  exec 3>&1
  parse_args "$@"
  if (( PRINT_ACLS )); then
    print_acls
    return 0
  fi
  # Everything the user gave is checked before Azure is asked anything or anything is created.
  (( DESTROY || ROTATE )) || read_secrets
  command -v az >/dev/null 2>&1 || die "Azure CLI (az) not found: install it, then run az login"
  WORK_DIR=$(mktemp -d)
  chmod 700 "$WORK_DIR"
  trap 'rm -rf "$WORK_DIR"' EXIT
  derive_names
  check_reused
  if (( DESTROY )); then
    destroy
    return 0
  fi
  if (( ROTATE )); then
    VAULT_ID=$(read_or '<vault-id>' az keyvault show --name "$VAULT" --resource-group "$RESOURCE_GROUP" --query id -o tsv)
    rotate_trigger_secret
    if (( DRY_RUN )); then log "dry run: nothing was changed"; else log "done: the trigger's secret rotated"; fi
    return 0
  fi
  ensure_group
  ensure_storage
  ensure_vault
  store_secrets
  if [[ "$AUTH" == "entra" ]]; then
    ensure_identity
    ensure_trigger_app
    ensure_trigger_credential
  fi
  ensure_observability
  [[ "$HOSTING_PLAN" == "premium" ]] && ensure_plan
  ensure_app
  [[ "$HOSTING_PLAN" == "flex" ]] && ensure_flex_plan_tagged
  if [[ "$AUTH" == "entra" ]]; then
    ensure_keyless_grants
    print_confluent_setup
    if [[ -z "$IDENTITY_POOL_ID" ]]; then
      log "stopped before the app settings: the identity pools do not exist yet (see above)"
      return 0
    fi
  fi
  ensure_settings
  [[ "$AUTH" == "entra" ]] && drop_storage_key_setting
  if [[ "$HOSTING_PLAN" == "flex" ]]; then ensure_flex_scale; else ensure_scale_monitoring; fi
  ensure_references_resolved
  publish
  if (( DRY_RUN )); then log "dry run: nothing was changed"; else log "done: $APP ($HOSTING_PLAN)"; fi
  next_steps
}

main "$@"

#!/usr/bin/env bash
# Provision Azure for the trade-settlement function app and publish it. Run after `az login`.
# Idempotent (a second run changes nothing that already matches), non-interactive, secrets never on a
# command line or in output. See --help.
set -euo pipefail

readonly TOOL_TAG="managed-by=trade-settlement-deploy"
readonly SECRET_KEYS=(KAFKA_BOOTSTRAP_SERVERS KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD KAFKA_PRODUCER_CONFIG SCHEMA_REGISTRY_CONFIG)
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT_DIR

PREFIX="tradesettle"
LOCATION="westeurope"
RESOURCE_GROUP=""
SUFFIX=""
PLAN_SKU="EP1"
MAX_BURST="20"
SECRETS_FILE="deploy.secrets"
SCHEMA_REGISTRY_URL=""
CONSUMER_GROUP="trade-settlement"
LAG_THRESHOLD="1000"
WAIT_TIMEOUT="600"
POLL_SECONDS="${DEPLOY_POLL_SECONDS:-5}"
DRY_RUN=0
DESTROY=0
FORCE_PUBLISH=0

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh [options]

Creates or reuses, in order: resource group; storage account; Key Vault (RBAC mode); the secrets from the
secrets file; an Elastic Premium Linux plan; a Python 3.11 Functions v4 app with a system-assigned identity
holding "Key Vault Secrets User" on the vault; app settings (Key Vault references for secrets); runtime scale
monitoring; then publishes with `func azure functionapp publish --build remote`.
Premium plans bill while deployed: use --destroy when done.

Options (each may also be set in a --config file as KEY=VALUE, e.g. LOCATION=northeurope):
  --config FILE            read settings from FILE first (keys: PREFIX LOCATION RESOURCE_GROUP SUFFIX PLAN_SKU
                           MAX_BURST SECRETS_FILE SCHEMA_REGISTRY_URL CONSUMER_GROUP LAG_THRESHOLD)
  --prefix NAME            name prefix, lower-case letters and digits (default: tradesettle)
  --location REGION        Azure region (default: westeurope)
  --resource-group NAME    resource group (default: <prefix>-<suffix>-rg)
  --suffix SUFFIX          unique suffix for global names (default: derived from the subscription and prefix,
                           stable across runs)
  --sku SKU                Elastic Premium SKU: EP1, EP2 or EP3 (default: EP1)
  --max-burst N            maximum instances the plan may scale out to, 1..20 (default: 20)
  --secrets-file FILE      KEY=VALUE file with KAFKA_BOOTSTRAP_SERVERS, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD,
                           KAFKA_PRODUCER_CONFIG, SCHEMA_REGISTRY_CONFIG (default: deploy.secrets; '-' = stdin)
  --schema-registry-url URL  Schema Registry endpoint (not a secret)
  --consumer-group NAME    Kafka consumer group of the trigger (default: trade-settlement)
  --lag-threshold N        lag per instance that triggers scale-out (default: 1000)
  --force-publish          publish even if this code was already published
  --dry-run                print every command that would change something, secrets masked; change nothing
  --destroy                delete what this script created (found by tag); never a resource group it did not
                           create
  -h, --help               this text
EOF
}

die() { echo "deploy.sh: $*" >&2; exit 1; }
log() { echo "==> $*" >&3; }

# ---- arguments -------------------------------------------------------------------------------------------

load_config() {
  local file="$1" line key value
  [[ -f "$file" ]] || die "config file not found: $file"
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" == *=* ]] || die "config file $file: not KEY=VALUE: $line"
    key="${line%%=*}"; value="${line#*=}"
    case "$key" in
      PREFIX|LOCATION|RESOURCE_GROUP|SUFFIX|PLAN_SKU|MAX_BURST|SECRETS_FILE|SCHEMA_REGISTRY_URL|CONSUMER_GROUP|LAG_THRESHOLD)
        printf -v "$key" '%s' "$value" ;;
      *) die "config file $file: unknown key $key" ;;
    esac
  done < "$file"
}

parse_args() {
  local args=("$@") i=0
  # --config first, so flags override it wherever they stand.
  while (( i < ${#args[@]} )); do
    if [[ "${args[i]}" == "--config" ]]; then load_config "${args[i+1]:?--config needs a file}"; fi
    i=$((i + 1))
  done
  while (($#)); do
    case "$1" in
      --config) shift ;;
      --prefix) PREFIX="${2:?}"; shift ;;
      --location) LOCATION="${2:?}"; shift ;;
      --resource-group) RESOURCE_GROUP="${2:?}"; shift ;;
      --suffix) SUFFIX="${2:?}"; shift ;;
      --sku) PLAN_SKU="${2:?}"; shift ;;
      --max-burst) MAX_BURST="${2:?}"; shift ;;
      --secrets-file) SECRETS_FILE="${2:?}"; shift ;;
      --schema-registry-url) SCHEMA_REGISTRY_URL="${2:?}"; shift ;;
      --consumer-group) CONSUMER_GROUP="${2:?}"; shift ;;
      --lag-threshold) LAG_THRESHOLD="${2:?}"; shift ;;
      --force-publish) FORCE_PUBLISH=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --destroy) DESTROY=1 ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
  done
  [[ "$PREFIX" =~ ^[a-z][a-z0-9]{2,11}$ ]] || die "--prefix must be 3-12 lower-case letters and digits"
  [[ "$PLAN_SKU" =~ ^EP[123]$ ]] || die "--sku must be EP1, EP2 or EP3"
  # The Azure CLI (2.91.0) accepts --max-burst 0..20 for Elastic Premium plans; 0 would never scale out.
  if ! [[ "$MAX_BURST" =~ ^[0-9]+$ ]] || (( MAX_BURST < 1 || MAX_BURST > 20 )); then
    die "--max-burst must be 1..20 (the Azure CLI's limit for Elastic Premium plans)"
  fi
  [[ "$LAG_THRESHOLD" =~ ^[0-9]+$ ]] || die "--lag-threshold must be a whole number"
  [[ -z "$SUFFIX" || "$SUFFIX" =~ ^[a-z0-9]{3,8}$ ]] || die "--suffix must be 3-8 lower-case letters and digits"
}

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
  DEPLOYMENT="$PREFIX-$SUFFIX"
  RESOURCE_GROUP="${RESOURCE_GROUP:-$PREFIX-$SUFFIX-rg}"
  STORAGE="${PREFIX}${SUFFIX}st"
  VAULT="${PREFIX}-${SUFFIX}-kv"
  PLAN="${PREFIX}-${SUFFIX}-plan"
  APP="${PREFIX}-${SUFFIX}-func"
  TAGS=("$TOOL_TAG" "deployment=$DEPLOYMENT")
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
  done < <(if [[ "$src" == "-" ]]; then cat; else cat -- "$src"; fi)
  local required
  for required in KAFKA_BOOTSTRAP_SERVERS KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD; do
    [[ -n "${SECRETS[$required]:-}" ]] || die "secrets file: $required is missing"
  done
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
  log "secret $name set"
}

# ---- steps -----------------------------------------------------------------------------------------------

ensure_group() {
  if exists az group show --name "$RESOURCE_GROUP"; then
    log "resource group $RESOURCE_GROUP exists"
  else
    change "create resource group" az group create --name "$RESOURCE_GROUP" --location "$LOCATION" \
      --tags "${TAGS[@]}" --output none >/dev/null
    log "resource group $RESOURCE_GROUP created"
  fi
}

ensure_storage() {
  if exists az storage account show --name "$STORAGE" --resource-group "$RESOURCE_GROUP"; then
    log "storage account $STORAGE exists"
  else
    change "create storage account" az storage account create --name "$STORAGE" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --sku Standard_LRS --kind StorageV2 --min-tls-version TLS1_2 \
      --allow-blob-public-access false --tags "${TAGS[@]}" --output none >/dev/null
    log "storage account $STORAGE created"
  fi
}

ensure_vault() {
  if exists az keyvault show --name "$VAULT" --resource-group "$RESOURCE_GROUP"; then
    log "key vault $VAULT exists"
  elif exists az keyvault show-deleted --name "$VAULT"; then
    # A destroyed deployment leaves its vault soft-deleted, holding the name: bring it back (secrets and all).
    change "recover key vault" az keyvault recover --name "$VAULT" --output none >/dev/null
    log "key vault $VAULT recovered from soft delete"
  else
    change "create key vault" az keyvault create --name "$VAULT" --resource-group "$RESOURCE_GROUP" \
      --location "$LOCATION" --enable-rbac-authorization true --tags "${TAGS[@]}" --output none >/dev/null
    log "key vault $VAULT created (RBAC mode)"
  fi
  VAULT_ID=$(read_or '<vault-id>' az keyvault show --name "$VAULT" --resource-group "$RESOURCE_GROUP" --query id -o tsv)
  VAULT_URI="https://${VAULT}.vault.azure.net"
}

ensure_role() {
  local principal="$1" type="$2" role="$3" count
  # Filtered by object id on our side: `--assignee` resolves the principal through Microsoft Graph, which may
  # not see a managed identity created moments ago.
  count=$(read_or 0 az role assignment list --scope "$VAULT_ID" --role "$role" \
    --query "length([?principalId=='$principal'])" -o tsv)
  if [[ "$count" == "0" ]]; then
    change "grant $role" az role assignment create --assignee-object-id "$principal" --assignee-principal-type "$type" \
      --role "$role" --scope "$VAULT_ID" --output none >/dev/null
    log "granted $role to $type $principal"
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
    log "plan $PLAN ($PLAN_SKU, Linux, max burst $MAX_BURST) created"
  fi
}

ensure_app() {
  if exists az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP"; then
    log "function app $APP exists"
  else
    change "create function app" az functionapp create --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --plan "$PLAN" --storage-account "$STORAGE" --runtime python --runtime-version 3.11 --functions-version 4 \
      --os-type Linux --assign-identity '[system]' --tags "${TAGS[@]}" --output none >/dev/null
    log "function app $APP created"
  fi
  PRINCIPAL=$(read_or '<app-principal>' az functionapp identity show --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query principalId -o tsv 2>/dev/null || true)
  if [[ -z "$PRINCIPAL" ]]; then
    PRINCIPAL=$(change "assign identity" az functionapp identity assign --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --query principalId -o tsv)
  fi
  ensure_role "$PRINCIPAL" ServicePrincipal "Key Vault Secrets User"
}

desired_settings() {
  local key
  for key in "${SECRET_KEYS[@]}"; do
    [[ -n "${SECRETS[$key]:-}" ]] && printf '%s=@Microsoft.KeyVault(SecretUri=%s/secrets/%s/)\n' "$key" "$VAULT_URI" "$(secret_name "$key")"
  done
  printf '%s\n' \
    "SCHEMA_REGISTRY_URL=$SCHEMA_REGISTRY_URL" \
    "KAFKA_CONSUMER_GROUP=$CONSUMER_GROUP" \
    "KAFKA_LAG_THRESHOLD=$LAG_THRESHOLD" \
    "KAFKA_TRIGGER_PROTOCOL=SaslSsl" \
    "KAFKA_TRIGGER_AUTH_MODE=Plain" \
    "USER_TRADES_TOPIC=user_trades" \
    "SETTLEMENTS_TOPIC=trade-settlements" \
    "DEAD_LETTER_TOPIC=user_trades-dlq"
}

ensure_settings() {
  [[ -n "$SCHEMA_REGISTRY_URL" ]] || die "--schema-registry-url is required"
  local current wanted=() line name value
  current=$(read_or '' az functionapp config appsettings list --name "$APP" --resource-group "$RESOURCE_GROUP" \
    --query '[].[name,value]' -o tsv)
  while IFS= read -r line; do
    name="${line%%=*}"; value="${line#*=}"
    if ! grep -qxF "$(printf '%s\t%s' "$name" "$value")" <<<"$current"; then
      wanted+=("$line")
    fi
  done < <(desired_settings)
  if (( ${#wanted[@]} )); then
    change "set app settings" az functionapp config appsettings set --name "$APP" --resource-group "$RESOURCE_GROUP" \
      --settings "${wanted[@]}" --output none >/dev/null
    log "app settings updated: $(printf '%s ' "${wanted[@]%%=*}")"
  else
    log "app settings match"
  fi
}

ensure_scale_monitoring() {
  local enabled
  enabled=$(read_or false az resource show --resource-group "$RESOURCE_GROUP" --name "$APP/config/web" \
    --resource-type Microsoft.Web/sites --query properties.functionsRuntimeScaleMonitoringEnabled -o tsv)
  if [[ "$enabled" != "true" ]]; then
    change "enable runtime scale monitoring" az resource update --resource-group "$RESOURCE_GROUP" --name "$APP/config/web" \
      --set properties.functionsRuntimeScaleMonitoringEnabled=1 --resource-type Microsoft.Web/sites --output none >/dev/null
    log "runtime scale monitoring enabled"
  else
    log "runtime scale monitoring is on"
  fi
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
  (cd "$ROOT_DIR" && cat function_app.py host.json requirements.txt settlement/*.py settlement/schemas/*.py | sha256sum | cut -c1-16)
}

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
  log "published $APP ($sha)"
}

query_app_id() { read_or '<app-id>' az functionapp show --name "$APP" --resource-group "$RESOURCE_GROUP" --query id -o tsv; }

# ---- destroy ---------------------------------------------------------------------------------------------

destroy() {
  local group_tags ids
  if ! exists az group show --name "$RESOURCE_GROUP"; then
    log "resource group $RESOURCE_GROUP does not exist: nothing to destroy"
    return 0
  fi
  group_tags=$(query az group show --name "$RESOURCE_GROUP" --query "tags.deployment" -o tsv)
  if [[ "$group_tags" == "$DEPLOYMENT" ]]; then
    change "delete resource group" az group delete --name "$RESOURCE_GROUP" --yes --no-wait >/dev/null
    log "deleting resource group $RESOURCE_GROUP (created by this script)"
  else
    # The CLI (2.91.0) refuses --tag together with --resource-group: list by tag, keep this group's.
    ids=$(query az resource list --tag "deployment=$DEPLOYMENT" --query '[].[id,resourceGroup]' -o tsv \
      | awk -F '\t' -v g="$RESOURCE_GROUP" 'tolower($2) == tolower(g) { print $1 }')
    if [[ -z "$ids" ]]; then
      log "no resources tagged deployment=$DEPLOYMENT in $RESOURCE_GROUP"
      return 0
    fi
    # shellcheck disable=SC2086 # one id per word
    change "delete tagged resources" az resource delete --ids $ids >/dev/null
    log "deleted resources tagged deployment=$DEPLOYMENT; resource group $RESOURCE_GROUP was not created here and stays"
  fi
}

# ---- main ------------------------------------------------------------------------------------------------

main() {
  exec 3>&1
  parse_args "$@"
  command -v az >/dev/null 2>&1 || die "Azure CLI (az) not found: install it, then run az login"
  WORK_DIR=$(mktemp -d)
  chmod 700 "$WORK_DIR"
  trap 'rm -rf "$WORK_DIR"' EXIT
  derive_names
  if (( DESTROY )); then
    destroy
    return 0
  fi
  read_secrets
  ensure_group
  ensure_storage
  ensure_vault
  store_secrets
  ensure_plan
  ensure_app
  ensure_settings
  ensure_scale_monitoring
  ensure_references_resolved
  publish
  log "done: https://${APP}.azurewebsites.net"
}

main "$@"

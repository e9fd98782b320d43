"""Drives keyhole's admin API with the official `anthropic` SDK, unmodified.

Run by tests/admin.rs (`sdk_drives_the_admin_api`) with KEYHOLE_ADMIN_URL
and KEYHOLE_ADMIN_TOKEN set, against a keyhole whose egress allows
`api.example.test` and `*.example.test` only. Every check that fails is
printed and the script exits 1; on success it prints one line
`RESULT {json}` for the Rust side to check the config file against.
Every response body is recorded and, at the end, searched for the secret
values sent: none may appear.
"""

import json
import os
import sys

import anthropic

URL = os.environ["KEYHOLE_ADMIN_URL"]
TOKEN = os.environ["KEYHOLE_ADMIN_TOKEN"]

SECRETS = [
    "sdk-secret-0-5f1c9a",
    "sdk-secret-1-77e0b2",
    "sdk-secret-2-c4d3a1",
    "sdk-bearer-token-3-9a8b",
    "sdk-access-token-4-1e2f",
    "sdk-refresh-token-4-3c4d",
    "sdk-client-secret-4-5e6f",
]
NEW_SECRET = "sdk-rotated-secret-0-aa11bb"
ALL_SECRETS = SECRETS + [NEW_SECRET]

bodies = []
failures = []


def record(response):
    response.read()
    bodies.append(response.text)


def client_with(key):
    http = anthropic.DefaultHttpxClient(event_hooks={"response": [record]}, trust_env=False)
    return anthropic.Anthropic(api_key=key, base_url=URL, max_retries=0, http_client=http)


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def expect_error(kind, status, error_type, fn, contains=()):
    """Calls fn, which must raise `kind` with this status and envelope."""
    try:
        fn()
    except kind as e:
        check(e.status_code == status, f"{kind.__name__}: status {e.status_code}, want {status}")
        body = e.body if isinstance(e.body, dict) else {}
        check(body.get("type") == "error", f"{kind.__name__}: envelope type {body!r}")
        error = body.get("error", {})
        check(error.get("type") == error_type, f"{kind.__name__}: error type {error!r}")
        message = error.get("message", "")
        for text in contains:
            check(text in message, f"{kind.__name__}: {text!r} not in message {message!r}")
        return message
    except Exception as e:  # noqa: BLE001 - any other outcome is a failure
        check(False, f"expected {kind.__name__}, got {type(e).__name__}: {e}")
        return ""
    check(False, f"expected {kind.__name__}, the call succeeded")
    return ""


def env_auth(i, hosts):
    return {
        "type": "environment_variable",
        "secret_name": f"SDK_TOKEN_{i}",
        "secret_value": SECRETS[i],
        "networking": {"type": "limited", "allowed_hosts": hosts},
    }


client = client_with(TOKEN)
vaults = client.beta.vaults
credentials = client.beta.vaults.credentials

# --- vaults ---
vault = vaults.create(display_name="SDK vault", metadata={"team": "infra", "drop": "me"})
check(vault.id.startswith("vlt_"), f"vault id {vault.id}")
check(vault.type == "vault" and vault.archived_at is None, f"vault {vault}")
check(vaults.retrieve(vault.id).display_name == "SDK vault", "vault retrieve")
vault = vaults.update(vault.id, display_name="SDK vault 2", metadata={"drop": None, "env": "ci"})
check(vault.display_name == "SDK vault 2", f"vault rename {vault.display_name}")
check(vault.metadata == {"team": "infra", "env": "ci"}, f"vault metadata patch {vault.metadata}")
check(vault.id in [v.id for v in vaults.list()], "vault listed")

# --- credentials: three environment variables, a static bearer, an MCP OAuth ---
created = [
    credentials.create(
        vault.id,
        display_name=f"cred {i}",
        metadata={"n": str(i)},
        auth=env_auth(i, ["api.example.test"]),
    )
    for i in range(3)
]
created.append(
    credentials.create(
        vault.id,
        auth={
            "type": "static_bearer",
            "mcp_server_url": "https://mcp.example.test/sse",
            "token": SECRETS[3],
        },
    )
)
created.append(
    credentials.create(
        vault.id,
        display_name="oauth",
        auth={
            "type": "mcp_oauth",
            "mcp_server_url": "https://oauth.example.test/mcp",
            "access_token": SECRETS[4],
            "expires_at": "2099-01-01T00:00:00Z",
            "refresh": {
                "client_id": "client-1",
                "refresh_token": SECRETS[5],
                "token_endpoint": "https://oauth.example.test/token",
                "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": SECRETS[6]},
                "scope": "read",
            },
        },
    )
)
ids = [c.id for c in created]
check(all(i.startswith("vcrd_") for i in ids) and len(set(ids)) == 5, f"credential ids {ids}")
first = created[0]
check(first.type == "vault_credential" and first.vault_id == vault.id, f"created {first}")
check(first.auth.type == "environment_variable" and first.auth.secret_name == "SDK_TOKEN_0", "auth view")
check(first.auth.injection_location.header and not first.auth.injection_location.body, "injection default")
check(created[3].auth.type == "static_bearer", "static_bearer view")
check(created[4].auth.refresh.token_endpoint_auth.type == "client_secret_basic", "mcp_oauth view")
check(first.created_at == first.updated_at, "timestamps on create")

# --- update: metadata patch, networking replace, secret replace ---
c0 = credentials.update(first.id, vault_id=vault.id, metadata={"n": None, "k": "v"})
check(c0.metadata == {"k": "v"} and c0.display_name == "cred 0", f"metadata patch {c0}")
c0 = credentials.update(
    first.id,
    vault_id=vault.id,
    auth={"type": "environment_variable", "networking": {"type": "limited", "allowed_hosts": ["*.example.test"]}},
)
check(c0.auth.networking.allowed_hosts == ["*.example.test"], f"networking replace {c0.auth}")
c0 = credentials.update(
    first.id,
    vault_id=vault.id,
    auth={"type": "environment_variable", "secret_value": NEW_SECRET, "injection_location": {"body": True}},
)
check(c0.auth.injection_location.header and c0.auth.injection_location.body, "injection merge")
check(c0.updated_at >= c0.created_at, "updated_at moves")
check(credentials.retrieve(first.id, vault_id=vault.id).metadata == {"k": "v"}, "retrieve after update")

# --- list: limit 2 over 5, every page; then archive and include_archived ---
page = credentials.list(vault.id, limit=2)
sizes = [len(page.data)]
while page.has_next_page():
    page = page.get_next_page()
    sizes.append(len(page.data))
check(sizes == [2, 2, 1], f"page sizes {sizes}")
check(page.next_page is None, "last page has no next_page")
check([c.id for c in credentials.list(vault.id, limit=2)] == ids, "auto-pagination order")

archived = credentials.archive(ids[2], vault_id=vault.id)
check(archived.archived_at is not None, "archive sets archived_at")
listed = [c.id for c in credentials.list(vault.id)]
check(ids[2] not in listed and len(listed) == 4, f"archived hidden {listed}")
listed = [c.id for c in credentials.list(vault.id, include_archived=True)]
check(listed == ids, f"include_archived {listed}")

validation = credentials.mcp_oauth_validate(ids[4], vault_id=vault.id)
check(validation.status == "unknown" and validation.has_refresh_token, f"validate {validation}")

deleted = credentials.delete(ids[1], vault_id=vault.id)
check(deleted.id == ids[1] and deleted.type == "vault_credential_deleted", f"delete {deleted}")

# --- errors: 400, 401, 404 ---
expect_error(
    anthropic.BadRequestError, 400, "invalid_request_error",
    lambda: credentials.create(vault.id, auth=env_auth(5, ["https://api.example.test/path", "ok.example.test"])),
    contains=("auth.networking.allowed_hosts[0]",),
)
expect_error(
    anthropic.BadRequestError, 400, "invalid_request_error",
    lambda: credentials.create(vault.id, auth=env_auth(5, ["elsewhere.test"])),
    contains=("credential_host_unreachable_error", "auth.networking.allowed_hosts[0]"),
)
expect_error(
    anthropic.BadRequestError, 400, "invalid_request_error",
    lambda: credentials.update(
        first.id,
        vault_id=vault.id,
        auth={"type": "environment_variable", "networking": {"type": "limited", "allowed_hosts": ["elsewhere.test"]}},
    ),
    contains=("credential_host_unreachable_error",),
)
expect_error(
    anthropic.BadRequestError, 400, "invalid_request_error",
    lambda: credentials.update(first.id, vault_id=vault.id, auth={"type": "static_bearer", "token": "x"}),
    contains=("auth.type",),
)
expect_error(
    anthropic.BadRequestError, 400, "invalid_request_error",
    lambda: credentials.list(vault.id, limit=101),
    contains=("limit",),
)
expect_error(
    anthropic.AuthenticationError, 401, "authentication_error",
    lambda: client_with("not-the-token").beta.vaults.credentials.list(vault.id),
)
expect_error(
    anthropic.NotFoundError, 404, "not_found_error",
    lambda: credentials.retrieve("vcrd_doesnotexist", vault_id=vault.id),
)
expect_error(
    anthropic.NotFoundError, 404, "not_found_error",
    lambda: credentials.retrieve(ids[1], vault_id=vault.id),
)
expect_error(anthropic.NotFoundError, 404, "not_found_error", lambda: vaults.retrieve("vlt_doesnotexist"))

# --- a second vault: archive, then delete with its credential ---
other = vaults.create(display_name="short-lived")
credentials.create(other.id, auth=env_auth(6, ["api.example.test"]))
check(vaults.archive(other.id).archived_at is not None, "vault archive")
check(other.id not in [v.id for v in vaults.list()], "archived vault hidden")
check(other.id in [v.id for v in vaults.list(include_archived=True)], "archived vault listed on request")
gone = vaults.delete(other.id)
check(gone.id == other.id and gone.type == "vault_deleted", f"vault delete {gone}")
expect_error(anthropic.NotFoundError, 404, "not_found_error", lambda: vaults.retrieve(other.id))

# --- no response ever held a secret ---
for body in bodies:
    for secret in ALL_SECRETS:
        check(secret not in body, f"a response holds secret {secret!r}: {body[:200]}")
check(len(bodies) > 30, f"only {len(bodies)} responses recorded")

if failures:
    print(f"{len(failures)} checks failed", file=sys.stderr)
    sys.exit(1)
print(
    "RESULT "
    + json.dumps(
        {
            "vault": vault.id,
            "rotated": ids[0],
            "new_secret": NEW_SECRET,
            "archived": ids[2],
            "deleted": ids[1],
            "kept": [ids[0], ids[2], ids[3], ids[4]],
            "responses": len(bodies),
        }
    )
)

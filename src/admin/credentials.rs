//! `/v1/vaults/{vault_id}/credentials...`: create, retrieve, update, list,
//! archive, delete and `mcp_oauth_validate`.
//!
//! Reads use the config in force; changes go through [`Store::edit`], which
//! re-validates the whole file (so a credential host that egress cannot
//! reach is refused, as `credential_host_unreachable_error`), puts it in
//! force for the next proxied request and writes it back.
//!
//! [`Store::edit`]: crate::store::Store::edit

use serde_json::{json, Value};

use super::error::{self, ApiError};
use super::page::ListQuery;
use super::{create, json_body, stamp, views, Admin};
use crate::model::update;
use crate::model::{Auth, Config, Credential};

/// `GET /v1/vaults/{vault_id}/credentials`.
pub async fn list(admin: &Admin, vault_id: &str, query: Option<&str>) -> Result<Value, ApiError> {
    let q = ListQuery::parse(query)?;
    let config = admin.store().current().await;
    vault(&config, vault_id)?;
    let items: Vec<&Credential> = config
        .credentials
        .iter()
        .filter(|c| c.vault_id == vault_id && (q.include_archived || !c.is_archived()))
        .collect();
    let (page, next) = q.page(&items, |c| c.id.as_str());
    let data = page
        .iter()
        .map(|c| views::credential(c, admin.loaded_at()))
        .collect();
    Ok(views::page(data, next))
}

/// `GET /v1/vaults/{vault_id}/credentials/{credential_id}`.
pub async fn retrieve(admin: &Admin, vault_id: &str, id: &str) -> Result<Value, ApiError> {
    let config = admin.store().current().await;
    let (_, c) = find(&config, vault_id, id)?;
    Ok(views::credential(c, admin.loaded_at()))
}

/// `POST /v1/vaults/{vault_id}/credentials`: a new credential with a fresh
/// `vcrd_` id, appended to the file.
pub async fn create(admin: &Admin, vault_id: &str, body: &[u8]) -> Result<Value, ApiError> {
    let body = json_body(body)?;
    let now = stamp::now();
    let at = stamp::format(now)?;
    let mut index = None;
    let edited = admin
        .store()
        .edit(|e| {
            let config = e.config();
            let v = vault(config, vault_id)?;
            if v.archived_at.is_some() {
                return Err(ApiError::Invalid(format!(
                    "vault {vault_id:?} is archived; create the credential in another vault"
                )));
            }
            let mut id = stamp::new_id("vcrd_")?;
            while config.credentials.iter().any(|c| c.id == id) {
                id = stamp::new_id("vcrd_")?;
            }
            let c = create::credential(&body, &id, vault_id, now, &at)?;
            create::conflict(config, &c)?;
            index = Some(config.credentials.len());
            e.put_credential(&c);
            Ok(c)
        })
        .await;
    let (c, _) = edited.map_err(|e| error::from_edit(e, index))?;
    tracing::info!(id = %c.id, vault_id, "admin: credential created");
    Ok(views::credential(&c, admin.loaded_at()))
}

/// `POST /v1/vaults/{vault_id}/credentials/{credential_id}`: the vault
/// API's update semantics ([`update::apply`]).
pub async fn update(
    admin: &Admin,
    vault_id: &str,
    id: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::Invalid("the request body is not UTF-8; send JSON".into()))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    let patch = update::parse(text)?;
    let now = stamp::now();
    let mut index = None;
    let edited = admin
        .store()
        .edit(|e| {
            let (i, current) = find(e.config(), vault_id, id)?;
            let mut next = update::apply(current, patch, now)?;
            keep_created(&mut next, admin.loaded_at());
            index = Some(i);
            e.put_credential(&next);
            Ok(next)
        })
        .await;
    let (c, _) = edited.map_err(|e| error::from_edit(e, index))?;
    tracing::info!(id = %c.id, vault_id, "admin: credential updated");
    Ok(views::credential(&c, admin.loaded_at()))
}

/// `POST .../credentials/{credential_id}/archive`: sets `archived_at`; an
/// archived credential is never substituted. Archiving again changes
/// nothing.
pub async fn archive(admin: &Admin, vault_id: &str, id: &str) -> Result<Value, ApiError> {
    let at = stamp::format(stamp::now())?;
    let mut index = None;
    let edited = admin
        .store()
        .edit(|e| {
            let (i, current) = find(e.config(), vault_id, id)?;
            let mut next = current.clone();
            if next.archived_at.is_none() {
                next.archived_at = Some(at.clone());
                next.updated_at = Some(at);
                keep_created(&mut next, admin.loaded_at());
                index = Some(i);
                e.put_credential(&next);
            }
            Ok(next)
        })
        .await;
    let (c, _) = edited.map_err(|e| error::from_edit(e, index))?;
    tracing::info!(id = %c.id, vault_id, "admin: credential archived");
    Ok(views::credential(&c, admin.loaded_at()))
}

/// `DELETE .../credentials/{credential_id}`: removes it from the file.
pub async fn delete(admin: &Admin, vault_id: &str, id: &str) -> Result<Value, ApiError> {
    let edited = admin
        .store()
        .edit(|e| {
            find(e.config(), vault_id, id)?;
            e.remove_credential(id);
            Ok(())
        })
        .await;
    edited.map_err(|e| error::from_edit(e, None))?;
    tracing::info!(id, vault_id, "admin: credential deleted");
    Ok(views::deleted(id, "vault_credential_deleted"))
}

/// `POST .../credentials/{credential_id}/mcp_oauth_validate`. keyhole does
/// not probe MCP servers, so the verdict is `unknown`; the other fields
/// are what the credential holds.
pub async fn validate(admin: &Admin, vault_id: &str, id: &str) -> Result<Value, ApiError> {
    let config = admin.store().current().await;
    let (_, c) = find(&config, vault_id, id)?;
    if !matches!(c.auth, Auth::McpOauth(_)) {
        return Err(ApiError::Invalid(format!(
            "credential {id:?} is a {} credential; only mcp_oauth credentials can be validated",
            c.auth.type_name()
        )));
    }
    let validation = admin
        .proxy()
        .tokens()
        .validate(&c.id, time::OffsetDateTime::now_utc())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json!({
        "type": "vault_credential_validation",
        "credential_id": c.id,
        "vault_id": c.vault_id,
        "status": validation.status.as_str(),
        "has_refresh_token": validation.has_refresh_token,
        // keyhole does not probe MCP servers: it never sends a request of
        // its own to one.
        "mcp_probe": null,
        "refresh": views::refresh_outcome(&validation.refresh),
        "validated_at": stamp::format(stamp::now())?,
    }))
}

/// The vault with this id, or a 404.
pub fn vault<'a>(config: &'a Config, vault_id: &str) -> Result<&'a crate::model::Vault, ApiError> {
    config
        .vaults
        .iter()
        .find(|v| v.id == vault_id)
        .ok_or_else(|| ApiError::no_vault(vault_id))
}

/// The credential `id` of vault `vault_id` and its index in the file, or a
/// 404 (for an unknown vault, an unknown id, or a credential of another vault).
fn find<'a>(
    config: &'a Config,
    vault_id: &str,
    id: &str,
) -> Result<(usize, &'a Credential), ApiError> {
    vault(config, vault_id)?;
    config
        .credentials
        .iter()
        .enumerate()
        .find(|(_, c)| c.id == id && c.vault_id == vault_id)
        .ok_or_else(|| ApiError::no_credential(vault_id, id))
}

/// Writes the shown creation time at an object's first edit, so that it
/// stays the same after a restart.
fn keep_created(c: &mut Credential, loaded_at: &str) {
    if c.created_at.is_none() {
        c.created_at = Some(loaded_at.to_owned());
    }
}

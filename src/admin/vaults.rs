//! `/v1/vaults...`: create, retrieve, update, list, archive, delete.
//!
//! The file's default vault (its `vault_id`) always exists, listed in
//! `vaults` or not; it can be edited and archived (which stops its
//! credentials being substituted) but not deleted. Deleting any other
//! vault deletes its credentials with it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::vault;
use super::error::{self, ApiError};
use super::page::ListQuery;
use super::{stamp, views, Admin};
use crate::model::{rules, Problem, Problems, Vault};

/// `POST /v1/vaults` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultCreate {
    display_name: String,
    metadata: Option<BTreeMap<String, String>>,
}

/// `POST /v1/vaults/{vault_id}` body: `display_name` absent or `null`
/// keeps the name (a vault always has one); `metadata` is a patch (a
/// string upserts, `null` deletes, omitted keys are kept; `metadata: null`
/// changes nothing).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultUpdate {
    display_name: Option<String>,
    metadata: Option<BTreeMap<String, Option<String>>>,
}

/// `GET /v1/vaults`.
pub async fn list(admin: &Admin, query: Option<&str>) -> Result<Value, ApiError> {
    let q = ListQuery::parse(query)?;
    let config = admin.store().current().await;
    let items: Vec<&Vault> = config
        .vaults
        .iter()
        .filter(|v| q.include_archived || v.archived_at.is_none())
        .collect();
    let (page, next) = q.page(&items, |v| v.id.as_str());
    let data = page
        .iter()
        .map(|v| views::vault(v, admin.loaded_at()))
        .collect();
    Ok(views::page(data, next))
}

/// `GET /v1/vaults/{vault_id}`.
pub async fn retrieve(admin: &Admin, vault_id: &str) -> Result<Value, ApiError> {
    let config = admin.store().current().await;
    Ok(views::vault(vault(&config, vault_id)?, admin.loaded_at()))
}

/// `POST /v1/vaults`: a new vault with a fresh `vlt_` id.
pub async fn create(admin: &Admin, body: &[u8]) -> Result<Value, ApiError> {
    let body: VaultCreate = parse(body)?;
    let mut problems = Problems::new();
    rules::display_name("display_name", &body.display_name, 1, &mut problems);
    let metadata = body.metadata.unwrap_or_default();
    rules::metadata("metadata", &metadata, &mut problems);
    problems.into_result(())?;
    let at = stamp::format(stamp::now())?;
    let edited = admin
        .store()
        .edit(|e| {
            let mut id = stamp::new_id("vlt_")?;
            while e.config().vaults.iter().any(|v| v.id == id) {
                id = stamp::new_id("vlt_")?;
            }
            let v = Vault {
                id,
                display_name: body.display_name,
                metadata,
                created_at: Some(at.clone()),
                updated_at: Some(at),
                archived_at: None,
                listed: true,
            };
            e.put_vault(&v);
            Ok(v)
        })
        .await;
    let (v, _) = edited.map_err(|e| error::from_edit(e, None))?;
    tracing::info!(id = %v.id, "admin: vault created");
    Ok(views::vault(&v, admin.loaded_at()))
}

/// `POST /v1/vaults/{vault_id}`.
pub async fn update(admin: &Admin, vault_id: &str, body: &[u8]) -> Result<Value, ApiError> {
    let body: VaultUpdate = parse(body)?;
    let at = stamp::format(stamp::now())?;
    let edited = admin
        .store()
        .edit(|e| {
            let mut next = vault(e.config(), vault_id)?.clone();
            let mut problems = Problems::new();
            if let Some(name) = body.display_name {
                rules::display_name("display_name", &name, 1, &mut problems);
                next.display_name = name;
            }
            if let Some(patch) = body.metadata {
                for (key, value) in patch {
                    match value {
                        Some(value) => next.metadata.insert(key, value),
                        None => next.metadata.remove(&key),
                    };
                }
                rules::metadata("metadata", &next.metadata, &mut problems);
            }
            problems.into_result(())?;
            touch(&mut next, &at, admin.loaded_at());
            e.put_vault(&next);
            Ok(next)
        })
        .await;
    let (v, _) = edited.map_err(|e| error::from_edit(e, None))?;
    tracing::info!(id = %v.id, "admin: vault updated");
    Ok(views::vault(&v, admin.loaded_at()))
}

/// `POST /v1/vaults/{vault_id}/archive`. Archiving again changes nothing.
pub async fn archive(admin: &Admin, vault_id: &str) -> Result<Value, ApiError> {
    let at = stamp::format(stamp::now())?;
    let edited = admin
        .store()
        .edit(|e| {
            let mut next = vault(e.config(), vault_id)?.clone();
            if next.archived_at.is_none() {
                next.archived_at = Some(at.clone());
                touch(&mut next, &at, admin.loaded_at());
                e.put_vault(&next);
            }
            Ok(next)
        })
        .await;
    let (v, _) = edited.map_err(|e| error::from_edit(e, None))?;
    tracing::info!(id = %v.id, "admin: vault archived");
    Ok(views::vault(&v, admin.loaded_at()))
}

/// `DELETE /v1/vaults/{vault_id}`: the vault and its credentials.
pub async fn delete(admin: &Admin, vault_id: &str) -> Result<Value, ApiError> {
    let edited = admin
        .store()
        .edit(|e| {
            vault(e.config(), vault_id)?;
            if e.config().vault_id == vault_id {
                return Err(ApiError::Invalid(format!(
                    "{vault_id:?} is the config file's default vault (its vault_id), which cannot be deleted; archive it, or change vault_id in the file"
                )));
            }
            // Last first: each removal is by position in the file.
            let ids: Vec<String> = e
                .config()
                .credentials
                .iter()
                .filter(|c| c.vault_id == vault_id)
                .map(|c| c.id.clone())
                .collect();
            for id in ids.iter().rev() {
                e.remove_credential(id);
            }
            e.remove_vault(vault_id);
            Ok(ids.len())
        })
        .await;
    let (credentials, _) = edited.map_err(|e| error::from_edit(e, None))?;
    tracing::info!(id = vault_id, credentials, "admin: vault deleted");
    Ok(views::deleted(vault_id, "vault_deleted"))
}

/// Sets `updated_at`, and `created_at` when the file had none.
fn touch(v: &mut Vault, at: &str, loaded_at: &str) {
    v.updated_at = Some(at.to_owned());
    if v.created_at.is_none() {
        v.created_at = Some(loaded_at.to_owned());
    }
}

/// Parses a body as `T`, locating a problem by its JSON path; an empty
/// body is `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (String::new(), e)));
    parsed.map_err(|(path, e)| {
        let path = if path == "." { String::new() } else { path };
        ApiError::problems(&Problems::from(Problem {
            path,
            message: e.to_string(),
        }))
    })
}

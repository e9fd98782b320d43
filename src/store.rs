//! The config file as the source of truth while keyhole runs: reloads from
//! disk and edits from the admin API go through one [`Store`].
//!
//! Every change is validated as a whole file before it takes effect: an
//! edit produces the new file text, which must load exactly as a file on
//! disk would, and the `apply` hook (which compiles the proxy's policy and
//! substitutions) must accept it. Only then is the file written (temporary
//! file in the same folder, fsync, rename) and the new config published.
//! Edits and reloads are serialised by one lock, so concurrent admin
//! updates never lose a write. The file is edited as a JSON document in
//! place: key order and the user's other fields stay as they were.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{self, write, ConfigError, Sources};
use crate::mcp::{BoxFuture, Fingerprint, PersistError, TokenPersist, TokenUpdate};
use crate::model::{Auth, Config, Credential, Problems, Vault};
use crate::state;
use crate::substitute::SubstituteError;

/// Compiles and installs a config; refuses one whose secrets and
/// placeholders cannot work together.
pub type Apply = Box<dyn Fn(Arc<Config>) -> Result<(), SubstituteError> + Send + Sync>;

/// Why an edit was not made.
#[derive(Debug, thiserror::Error)]
pub enum EditError<E> {
    /// The caller refused (not found, bad request, ...).
    #[error("{0}")]
    Refused(E),
    /// The edited file would not load.
    #[error("the change would make the config invalid: {0}")]
    Invalid(Problems),
    /// The proxy could not compile the edited config.
    #[error("the change cannot be applied: {0}")]
    NotApplied(SubstituteError),
    /// The file could not be written; nothing changed.
    #[error("cannot write the config file: {0}")]
    Write(#[from] state::StateError),
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The file is as last loaded or written.
    Unchanged,
    /// A new config is in force.
    Applied,
}

/// The config file, its parsed document and the config in force.
pub struct Store {
    path: PathBuf,
    /// Set once the proxy exists; until then every config is accepted.
    apply: OnceLock<Apply>,
    inner: Mutex<Inner>,
}

struct Inner {
    /// The file's text as last loaded or written.
    text: String,
    /// The same, as a JSON document (key order kept).
    doc: Value,
    config: Arc<Config>,
}

/// A pending edit: the current config and the document to change.
pub struct Edit<'a> {
    config: &'a Config,
    doc: &'a mut Value,
}

// === impl Store ===

impl Store {
    /// Loads the file. Returns the store and the config it holds.
    pub fn open(path: &Path) -> Result<(Store, Arc<Config>), StoreError> {
        let text = read(path)?;
        let (doc, config) =
            parse(path, &text).map_err(|e| StoreError::Config(ConfigError::Invalid(e)))?;
        let config = Arc::new(config);
        let store = Store {
            path: path.to_owned(),
            apply: OnceLock::new(),
            inner: Mutex::new(Inner {
                text,
                doc,
                config: config.clone(),
            }),
        };
        Ok((store, config))
    }

    /// Sets what compiles and installs every later config. Only the first
    /// call counts.
    pub fn on_change(&self, apply: Apply) {
        let _ = self.apply.set(apply);
    }

    fn apply(&self, config: Arc<Config>) -> Result<(), SubstituteError> {
        match self.apply.get() {
            Some(apply) => apply(config),
            None => Ok(()),
        }
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force.
    pub async fn current(&self) -> Arc<Config> {
        self.inner.lock().await.config.clone()
    }

    /// Rereads the file; applies it when it changed and is valid. An
    /// invalid file is refused and the config in force stays.
    pub async fn reload(&self) -> Result<Reloaded, StoreError> {
        let mut inner = self.inner.lock().await;
        let text = read(&self.path)?;
        if text == inner.text {
            return Ok(Reloaded::Unchanged);
        }
        let (doc, config) =
            parse(&self.path, &text).map_err(|e| StoreError::Config(ConfigError::Invalid(e)))?;
        let config = Arc::new(config);
        self.apply(config.clone()).map_err(StoreError::NotApplied)?;
        *inner = Inner { text, doc, config };
        Ok(Reloaded::Applied)
    }

    /// Runs `f` on a copy of the document; if it succeeds and the result
    /// loads and applies, writes the file and makes it current.
    pub async fn edit<T, E>(
        &self,
        f: impl FnOnce(&mut Edit<'_>) -> Result<T, E>,
    ) -> Result<(T, Arc<Config>), EditError<E>> {
        let mut inner = self.inner.lock().await;
        let mut doc = inner.doc.clone();
        let out = {
            let mut edit = Edit {
                config: &inner.config,
                doc: &mut doc,
            };
            f(&mut edit).map_err(EditError::Refused)?
        };
        if let Some(list) = doc.get_mut("credentials").and_then(Value::as_array_mut) {
            list.retain(|c| !c.is_null());
        }
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        let (doc, config) = parse(&self.path, &text).map_err(EditError::Invalid)?;
        let config = Arc::new(config);
        self.apply(config.clone()).map_err(EditError::NotApplied)?;
        if let Err(e) = state::write_atomic(&self.path, text.as_bytes(), file_mode(&self.path)) {
            // The file keeps the old config: so must the proxy.
            let _ = self.apply(inner.config.clone());
            return Err(EditError::Write(e));
        }
        *inner = Inner {
            text,
            doc,
            config: config.clone(),
        };
        Ok((out, config))
    }
}

/// Why the store could not load or reload.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The proxy could not compile the config.
    #[error("the config cannot be applied: {0}")]
    NotApplied(SubstituteError),
}

fn read(path: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(path).map_err(|source| {
        StoreError::Config(ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    })
}

fn parse(path: &Path, text: &str) -> Result<(Value, Config), Problems> {
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let env = |name: &str| std::env::var_os(name);
    let config = config::parse(
        text,
        &Sources {
            base_dir,
            env: &env,
        },
    )?;
    let doc = serde_json::from_str(text).unwrap_or(Value::Null);
    Ok((doc, config))
}

/// The file's permission bits, so a rewrite keeps them (0600 if unknown:
/// the file may hold secrets).
fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777)
}

// === impl Edit ===

impl Edit<'_> {
    /// The config before this edit.
    pub fn config(&self) -> &Config {
        self.config
    }

    /// Writes `c` into the document: in place of the credential with the
    /// same id, or appended.
    pub fn put_credential(&mut self, c: &Credential) {
        let value = write::credential(c);
        let index = self.config.credentials.iter().position(|x| x.id == c.id);
        let Some(list) = array(self.doc, "credentials") else {
            return;
        };
        match index.and_then(|i| list.get_mut(i)) {
            Some(slot) => write::merge_object(slot, value),
            None => list.push(value),
        }
    }

    /// Removes the credential with this id; false when there is none.
    pub fn remove_credential(&mut self, id: &str) -> bool {
        let Some(i) = self.config.credentials.iter().position(|x| x.id == id) else {
            return false;
        };
        let Some(list) = array(self.doc, "credentials") else {
            return false;
        };
        // A tombstone keeps the positions of the others valid for the rest
        // of this edit; tombstones are dropped before the file is written.
        match list.get_mut(i) {
            Some(slot) if !slot.is_null() => {
                *slot = Value::Null;
                true
            }
            _ => false,
        }
    }

    /// Writes `v` into the document's `vaults`: in place or appended.
    pub fn put_vault(&mut self, v: &Vault) {
        let value = write::vault(v);
        let Some(list) = array(self.doc, "vaults") else {
            return;
        };
        match list
            .iter_mut()
            .find(|x| x.get("id").and_then(Value::as_str) == Some(v.id.as_str()))
        {
            Some(slot) => write::merge_object(slot, value),
            None => list.push(value),
        }
    }

    /// Removes the vault with this id from `vaults`; false when not listed.
    pub fn remove_vault(&mut self, id: &str) -> bool {
        let Some(list) = array(self.doc, "vaults") else {
            return false;
        };
        let before = list.len();
        list.retain(|x| x.get("id").and_then(Value::as_str) != Some(id));
        list.len() != before
    }
}

/// The array at `key` of the top-level object, created when missing;
/// `None` only if the document is not an object (never, once loaded).
fn array<'a>(doc: &'a mut Value, key: &str) -> Option<&'a mut Vec<Value>> {
    let slot = doc
        .as_object_mut()?
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
}

/// Saves refreshed MCP tokens into the config file, through the same
/// validated, atomic write path as the admin API ([`Store::edit`]).
///
/// Holds the store weakly: the store's apply hook reaches the proxy, whose
/// token book holds this saver.
pub struct TokenSaver {
    store: Weak<Store>,
}

// === impl TokenSaver ===

impl TokenSaver {
    /// A saver writing into `store`.
    pub fn new(store: &Arc<Store>) -> TokenSaver {
        TokenSaver {
            store: Arc::downgrade(store),
        }
    }

    async fn write(&self, update: TokenUpdate) -> Result<(), PersistError> {
        let Some(store) = self.store.upgrade() else {
            return Err(PersistError::Failed("keyhole is shutting down".to_owned()));
        };
        let edited = store
            .edit(|edit| {
                let current = edit.config().credentials.iter().find(|c| c.id == update.id);
                // Saved only over the tokens the refresh started from: an
                // admin update in between wins.
                let Some(current) =
                    current.filter(|c| Fingerprint::of(&c.auth) == Some(update.replaces))
                else {
                    return Err(PersistError::Superseded);
                };
                let mut next = current.clone();
                let Auth::McpOauth(oauth) = &mut next.auth else {
                    return Err(PersistError::Superseded);
                };
                if let Some(access_token) = &update.access_token {
                    oauth.access_token = access_token.clone();
                    oauth.expires_at.clone_from(&update.expires_at);
                }
                if let (Some(refresh), Some(rotated)) = (&mut oauth.refresh, &update.refresh_token)
                {
                    refresh.refresh_token = rotated.clone();
                }
                edit.put_credential(&next);
                Ok(())
            })
            .await;
        match edited {
            Ok(_) => Ok(()),
            Err(EditError::Refused(e)) => Err(e),
            Err(e) => Err(PersistError::Failed(e.to_string())),
        }
    }
}

impl TokenPersist for TokenSaver {
    fn save(&self, update: TokenUpdate) -> BoxFuture<'_, Result<(), PersistError>> {
        Box::pin(self.write(update))
    }
}

//! keyhole config files built in code, so that a test names only what it
//! cares about: the egress allow-list and its `environment_variable`
//! credentials.
//!
//! ```ignore
//! let text = Config::new()
//!     .egress(&["api.example.test"])
//!     .credential(
//!         Credential::new("vcrd_api")
//!             .secret("API_TOKEN", API_SECRET)
//!             .allowed_hosts(&["api.example.test"]),
//!     )
//!     .json();
//! ```

use serde_json::{json, Map, Value};

/// A whole config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    egress: Option<Vec<String>>,
    credentials: Vec<Credential>,
    raw: Vec<Value>,
}

impl Config {
    /// No egress limit and no credentials: `{"credentials": []}`.
    pub fn new() -> Config {
        Config::default()
    }

    /// Limits egress to `hosts` (`"egress": {"type": "limited", ...}`).
    pub fn egress(mut self, hosts: &[&str]) -> Config {
        self.egress = Some(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    /// Adds a credential.
    pub fn credential(mut self, credential: Credential) -> Config {
        self.credentials.push(credential);
        self
    }

    /// Adds a credential written as JSON (an MCP credential, which
    /// [`Credential`] does not build), after the others.
    pub fn raw_credential(mut self, credential: Value) -> Config {
        self.raw.push(credential);
        self
    }

    /// The file's text, pretty-printed JSON.
    pub fn json(&self) -> String {
        let mut file = Map::new();
        if let Some(hosts) = &self.egress {
            file.insert(
                "egress".into(),
                json!({"type": "limited", "allowed_hosts": hosts}),
            );
        }
        let credentials = self
            .credentials
            .iter()
            .map(Credential::to_json)
            .chain(self.raw.iter().cloned())
            .collect();
        file.insert("credentials".into(), Value::Array(credentials));
        serde_json::to_string_pretty(&Value::Object(file)).expect("config JSON") + "\n"
    }
}

/// Which parts of a request a credential's placeholder is substituted in
/// (`injection_location`); keyhole's default is the headers only.
#[derive(Debug, Clone, Copy)]
pub enum Injection {
    /// Headers and bodies.
    HeaderAndBody,
    /// Bodies, never headers.
    BodyOnly,
}

/// One `environment_variable` credential.
#[derive(Debug, Clone)]
pub struct Credential {
    id: String,
    display_name: Option<String>,
    secret_name: String,
    secret_value: String,
    placeholder: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    injection: Option<Injection>,
}

impl Credential {
    /// A credential with this id; give it a secret with
    /// [`Credential::secret`].
    pub fn new(id: &str) -> Credential {
        Credential {
            id: id.to_owned(),
            display_name: None,
            secret_name: String::new(),
            secret_value: String::new(),
            placeholder: None,
            allowed_hosts: None,
            injection: None,
        }
    }

    /// The variable `name` whose real value is `value`.
    pub fn secret(mut self, name: &str, value: &str) -> Credential {
        self.secret_name = name.to_owned();
        self.secret_value = value.to_owned();
        self
    }

    /// Substituted on `hosts` only (`"networking": {"type": "limited"}`);
    /// without this, everywhere (`unrestricted`).
    pub fn allowed_hosts(mut self, hosts: &[&str]) -> Credential {
        self.allowed_hosts = Some(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    /// A pinned placeholder instead of one keyhole derives.
    pub fn placeholder(mut self, placeholder: &str) -> Credential {
        self.placeholder = Some(placeholder.to_owned());
        self
    }

    /// A `display_name`.
    pub fn display_name(mut self, name: &str) -> Credential {
        self.display_name = Some(name.to_owned());
        self
    }

    /// Where the placeholder is substituted.
    pub fn injection(mut self, injection: Injection) -> Credential {
        self.injection = Some(injection);
        self
    }

    fn to_json(&self) -> Value {
        let mut auth = Map::new();
        auth.insert("type".into(), json!("environment_variable"));
        auth.insert("secret_name".into(), json!(self.secret_name));
        auth.insert("secret_value".into(), json!(self.secret_value));
        if let Some(p) = &self.placeholder {
            auth.insert("placeholder".into(), json!(p));
        }
        let networking = match &self.allowed_hosts {
            Some(hosts) => json!({"type": "limited", "allowed_hosts": hosts}),
            None => json!({"type": "unrestricted"}),
        };
        auth.insert("networking".into(), networking);
        match self.injection {
            Some(Injection::HeaderAndBody) => {
                auth.insert(
                    "injection_location".into(),
                    json!({"header": true, "body": true}),
                );
            }
            Some(Injection::BodyOnly) => {
                auth.insert(
                    "injection_location".into(),
                    json!({"header": false, "body": true}),
                );
            }
            None => {}
        }
        let mut credential = Map::new();
        credential.insert("id".into(), json!(self.id));
        if let Some(name) = &self.display_name {
            credential.insert("display_name".into(), json!(name));
        }
        credential.insert("auth".into(), Value::Object(auth));
        Value::Object(credential)
    }
}

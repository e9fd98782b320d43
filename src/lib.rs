//! keyhole: an egress proxy for AI-agent sandboxes.
//!
//! The sandbox holds placeholders; keyhole swaps each for its credential's
//! real secret only on requests to the hosts that credential allows.
//! `docs/ARCHITECTURE.md` draws the modules and the path of one request.
//!
//! The crate is layered; each module uses only those above it, and the
//! pure core (down to [`substitute`]) knows nothing of sockets:
//! - [`secret`]: the [`Secret`](secret::Secret) type.
//! - [`host`]: host normalisation, host patterns and the compiled matcher.
//! - [`model`]: validated credentials and the update semantics of the vault API.
//! - [`mcp`]: MCP server credentials: which one applies to a request, the
//!   OAuth refresh exchange as bytes, and the live token of each.
//! - [`policy`]: the per-host decision (egress, which credentials apply)
//!   and `explain`.
//! - [`config`]: reading a JSON file into the model, reporting every problem.
//! - [`state`]: the state directory; [`placeholder`]: placeholder
//!   derivation under the state directory's key.
//! - [`substitute`]: placeholders to secrets in headers and bodies, and
//!   secrets back to placeholders in responses.
//! - [`tls`]: keyhole's CA, leaf certificates, upstream trust.
//! - [`audit`]: the audit log; [`logging`]: the tracing set-up.
//! - [`proxy`]: the listener, CONNECT, interception and the request pipeline.
//! - [`store`]: the config file as the source of truth while running;
//!   [`reload`]: SIGHUP and file changes.
//! - [`sandbox`]: transparent mode: the network namespace whose only way
//!   out is keyhole, and its DNS answerer.
//! - [`admin`]: the admin API (`--admin`): vault and credential endpoints,
//!   `/healthz`, `/metrics`.
//! - [`cli`]: the command-line interface (`run`, `check`, `explain`, ...).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod host;
pub mod logging;
pub mod mcp;
pub mod model;
pub mod placeholder;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod sandbox;
pub mod secret;
pub mod state;
pub mod store;
pub mod substitute;
pub mod tls;

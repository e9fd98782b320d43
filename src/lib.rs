//! keyhole: an egress proxy for AI-agent sandboxes.
//!
//! The sandbox holds placeholders; keyhole swaps each for its credential's
//! real secret only on requests to the hosts that credential allows.
//!
//! The crate is layered so that the core knows nothing of sockets:
//! - [`secret`]: the [`Secret`](secret::Secret) type.
//! - [`model`]: validated credentials and the update semantics of the vault API.
//! - [`config`]: reading a JSON file into the model, reporting every problem.
//! - [`policy`]: host normalisation, host patterns, the compiled matcher and
//!   the per-host decision.
//! - [`mcp`]: MCP server credentials: which one applies to a request, the
//!   OAuth refresh exchange as bytes, and the live token of each.
//! - [`cli`]: the command-line interface (`check`, `explain`, ...).
//! - [`admin`]: the admin API (`--admin`): vault and credential endpoints,
//!   `/healthz`, `/metrics`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod logging;
pub mod mcp;
pub mod model;
pub mod placeholder;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod state;
pub mod store;
pub mod substitute;
pub mod tls;

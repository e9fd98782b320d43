//! [`Snapshot`]: one policy generation, compiled from one config.

use crate::model::Config;
use crate::placeholder::PlaceholderKey;
use crate::policy::Policy;
use crate::substitute::{SubstituteError, Substitutions};

/// What one policy generation holds: the compiled policy and the
/// placeholders and secrets that go with it. Swapped as a whole, so a
/// request never sees the policy of one config with the secrets of another.
pub struct Snapshot {
    /// Where requests may go and which credentials apply.
    pub policy: Policy,
    /// Placeholders and secrets, by credential index.
    pub substitutions: Substitutions,
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles `config`: placeholders (pinned, or derived with `key`) and
    /// the matchers. Refuses placeholders that cannot work (see
    /// [`Substitutions::new`]).
    pub fn compile(config: &Config, key: &PlaceholderKey) -> Result<Snapshot, SubstituteError> {
        Ok(Snapshot {
            substitutions: Substitutions::new(config, key)?,
            policy: Policy::new(config.clone()),
        })
    }
}

//! A resource type this server hosts. Made only by the registry of mappings
//! ([`crate::mapping::Registry::resource_type`]), where a request names a type (its URL, a
//! Bundle entry); everything below takes it as it is.

use std::fmt;

/// A hosted resource type, such as `Patient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    /// The type a mapping declares (only the registry calls this).
    pub(crate) const fn hosted(name: &'static str) -> ResourceType {
        ResourceType(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl AsRef<str> for ResourceType {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq<&str> for ResourceType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

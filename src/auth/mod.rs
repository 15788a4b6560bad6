//! Authorization: SMART scopes, the server's signing keys and its access tokens.

pub mod keys;
pub mod scope;
pub mod token;

//! HTTP to a registry as layers: `transport` composes one request (origin checks, auth,
//! retry, logging); `auth` answers challenges, `credentials` finds and holds secrets,
//! `retry` decides when to try again, `origin` decides which hosts a request may follow,
//! `resolve` finds hosts without the C library.

pub mod auth;
pub(crate) mod credentials;
pub(crate) mod origin;
pub(crate) mod resolve;
pub(crate) mod retry;
pub mod transport;

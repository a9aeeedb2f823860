//! HTTP to a registry as layers. `transport` is the one place that composes a request:
//! ping and `auth` (challenges, tokens renewed on a 401), `origin` (which hosts a redirect
//! may reach and with what), `retry` (when to try again), the request log. Beside it:
//! `request` (what goes over the wire), `credentials` (found and held here, never handed
//! up), `storable` (whether a URL may be saved, answered without showing the secrets),
//! `tls` (the agent and what it trusts), `errors` (failed exchanges as errors with a
//! hint), `url` (redirect targets), `resolve` (names found without the C library).

pub mod auth;
pub(crate) mod credentials;
pub(crate) mod errors;
pub(crate) mod origin;
pub(crate) mod request;
pub(crate) mod resolve;
pub(crate) mod retry;
mod storable;
pub(crate) mod tls;
pub mod transport;
pub(crate) mod url;

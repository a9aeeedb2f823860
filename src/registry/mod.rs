//! Talking to a registry through the OCI distribution API. The operations here carry the
//! spec's names (check an existing blob, initiate an upload, stream a chunk, commit the
//! blob, commit the manifest) and each is a single request; deciding which to call lives in
//! `upload` and `push`.

pub mod http;
pub mod rules;

// The paths the fuzz targets and tests name.
pub use http::{auth, transport};

use std::io::Read;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::{MAX_JSON_BYTES, RawManifest, media};
use http::origin::Pointer;
use http::transport::{Body, Request, Response, Transport};

/// One repository on one registry, with the token scopes its requests need.
#[derive(Clone)]
pub struct Repository {
    transport: Arc<Transport>,
    name: String,
    scopes: Vec<String>,
}

/// An open upload session: the URL to send the next request to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub location: String,
    /// `OCI-Chunk-Min-Length`, when the registry announced one.
    pub chunk_min_length: Option<u64>,
}

pub enum Initiated {
    /// The registry mounted the blob from another repository; nothing to upload.
    Mounted,
    Session(Session),
}

/// What a PATCH achieved.
pub enum ChunkOutcome {
    Accepted {
        location: String,
        registry_offset: Option<u64>,
    },
    Refused(Response),
}

impl Repository {
    pub fn new(transport: Arc<Transport>, name: &str, actions: &str) -> Repository {
        Repository {
            transport,
            name: name.to_string(),
            scopes: vec![auth::repository_scope(name, actions)],
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Another repository of the same registry, over the same connection and credentials.
    pub fn sibling(&self, name: &str, actions: &str) -> Repository {
        Repository::new(self.transport.clone(), name, actions)
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    pub fn host(&self) -> &str {
        self.transport.host()
    }

    /// Whether an upload URL may be saved for a later run: the credentials it must not
    /// carry stay in `http`, the caller only learns yes or no.
    pub fn may_store(&self, url: &str) -> bool {
        self.transport.may_store(url)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.transport.base_url(), self.name)
    }

    fn request(&self, method: &'static str, url: String) -> Request<'_> {
        Request::new(method, url, &self.scopes)
    }

    /// `HEAD /v2/<name>/blobs/<digest>`: whether the registry holds the blob of `size`
    /// bytes. A blob it reports at another size is treated as absent: uploading it again
    /// makes the registry check the digest, where trusting the answer would push a
    /// manifest over a blob that may not be there.
    pub fn check_existing_blob(&self, digest: &Digest, size: u64) -> Result<bool> {
        let response = self
            .transport
            .send(self.request("HEAD", self.url(&format!("blobs/{digest}"))))?;
        match response.status {
            200..=299 => {
                let stored = response.header("content-length").map(str::trim);
                match stored.map(str::parse::<u64>) {
                    // Without a length there is nothing to contradict the digest.
                    None => Ok(true),
                    Some(Ok(stored)) if stored == size => Ok(true),
                    _ => {
                        self.transport.log(&format!(
                            "blob {} exists on {} with Content-Length {}, not {size}: uploading it again",
                            digest.short(),
                            self.host(),
                            stored.unwrap_or_default().chars().take(40).collect::<String>()
                        ));
                        Ok(false)
                    }
                }
            }
            404 => Ok(false),
            _ => Err(self
                .transport
                .status_error(response, &format!("checking blob {}", digest.short()))),
        }
    }

    /// `POST /v2/<name>/blobs/uploads/`, trying a cross-repository mount first when a
    /// source repository is given.
    pub fn initiate_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Initiated> {
        let (url, scopes) = match mount {
            Some((digest, from)) => (
                self.url(&format!(
                    "blobs/uploads/?mount={digest}&from={}",
                    auth::percent_encode(from)
                )),
                vec![self.scopes[0].clone(), auth::repository_scope(from, "pull")],
            ),
            None => (self.url("blobs/uploads/"), self.scopes.clone()),
        };
        let response = self.transport.send(Request::new("POST", url, &scopes))?;
        match response.status {
            201 if mount.is_some() => Ok(Initiated::Mounted),
            202 | 201 => Ok(Initiated::Session(self.session_from(&response)?)),
            _ => Err(self.transport.status_error(response, "starting an upload")),
        }
    }

    /// Where an upload continues, as the registry said; refused when it leaves TLS.
    fn upload_location(&self, answered: &str, location: &str) -> Result<String> {
        let url = transport::resolve_url(answered, location);
        self.transport.check_url(&url, Pointer::UploadLocation)?;
        Ok(url)
    }

    fn session_from(&self, response: &Response) -> Result<Session> {
        let location = response.header("location").ok_or_else(|| {
            Error::registry(format!(
                "{} started an upload without a Location",
                self.host()
            ))
        })?;
        Ok(Session {
            location: self.upload_location(&response.url, location)?,
            chunk_min_length: response
                .header("oci-chunk-min-length")
                .and_then(|v| v.trim().parse().ok()),
        })
    }

    /// `GET <location>`: how many bytes the registry holds for an upload session, and the
    /// location to continue at. `None` when the registry no longer knows the session.
    pub fn upload_status(&self, session: &Session) -> Result<Option<(Session, u64)>> {
        let response = self
            .transport
            .send(self.request("GET", session.location.clone()))?;
        match response.status {
            200..=299 => {
                let offset = response
                    .header("range")
                    .and_then(rules::parse_upload_range)
                    .unwrap_or(0);
                let next = match response.header("location") {
                    Some(location) => Session {
                        location: self.upload_location(&response.url, location)?,
                        chunk_min_length: session.chunk_min_length,
                    },
                    None => session.clone(),
                };
                Ok(Some((next, offset)))
            }
            400 | 404 | 416 => Ok(None),
            _ => Err(self
                .transport
                .status_error(response, "checking upload progress")),
        }
    }

    /// `PATCH <location>` with one chunk streamed from `open`.
    pub fn upload_chunk(
        &self,
        session: &Session,
        start: u64,
        length: u64,
        open: &(dyn Fn() -> std::io::Result<Box<dyn Read + Send>> + Sync),
    ) -> Result<ChunkOutcome> {
        let request = self
            .request("PATCH", session.location.clone())
            .header("content-type", "application/octet-stream")
            .header("content-range", rules::content_range(start, length))
            .body(Body::Stream { open, length })
            .no_retry();
        let response = self.transport.send(request)?;
        match response.status {
            200..=299 => Ok(ChunkOutcome::Accepted {
                location: match response.header("location") {
                    Some(location) => self.upload_location(&response.url, location)?,
                    None => session.location.clone(),
                },
                registry_offset: response.header("range").and_then(rules::parse_upload_range),
            }),
            _ => Ok(ChunkOutcome::Refused(response)),
        }
    }

    /// `PUT <location>?digest=` closing the session, with the remaining bytes (a whole
    /// blob for monolithic uploads, the last chunk for ECR, or nothing).
    pub fn commit_blob(
        &self,
        session: &Session,
        digest: &Digest,
        body: Body<'_>,
    ) -> Result<std::result::Result<(), Response>> {
        let separator = if session.location.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}digest={digest}", session.location);
        let mut request = self
            .request("PUT", url)
            .header("content-type", "application/octet-stream")
            .body(body);
        request.retry = false;
        let response = self.transport.send(request)?;
        match response.status {
            200..=299 => Ok(Ok(())),
            _ => Ok(Err(response)),
        }
    }

    /// `DELETE <location>`: abandons a session so the registry can free its space.
    /// Best effort: failing to clean up must not fail the push.
    pub fn cancel_upload(&self, session: &Session) {
        let _ = self
            .transport
            .send(self.request("DELETE", session.location.clone()).no_retry());
    }

    /// `PUT /v2/<name>/manifests/<reference>`, checking the digest the registry computed.
    pub fn commit_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<Digest> {
        let request = self
            .request("PUT", self.url(&format!("manifests/{reference}")))
            .header("content-type", manifest.media_type.clone())
            .body(Body::Bytes(&manifest.bytes));
        let response = self.transport.send(request)?;
        if !response.is_success() {
            return Err(self
                .transport
                .status_error(response, &format!("pushing manifest {reference}")));
        }
        if let Some(returned) = response.header("docker-content-digest")
            && returned != manifest.digest.as_str()
        {
            return Err(Error::registry(format!(
                "{} stored manifest {reference} as {returned}, but its content is {}",
                self.host(),
                manifest.digest
            ))
            .hint("the registry rewrote the manifest; it may not support this manifest type"));
        }
        Ok(manifest.digest.clone())
    }

    /// How fast the link takes blob bytes: opens an upload session, sends `probe` as one
    /// chunk, times it until the registry answers, and abandons the session. `None` when
    /// the registry would not take a chunk (the caller then goes without a measurement).
    pub fn measure_upload_speed(&self, probe: &[u8]) -> Result<Option<f64>> {
        let Initiated::Session(session) = self.initiate_upload(None)? else {
            return Ok(None);
        };
        let open = || -> std::io::Result<Box<dyn Read + Send>> {
            Ok(Box::new(std::io::Cursor::new(probe.to_vec())))
        };
        let started = std::time::Instant::now();
        let outcome = self.upload_chunk(&session, 0, probe.len() as u64, &open);
        let seconds = started.elapsed().as_secs_f64().max(1e-6);
        match outcome {
            Ok(ChunkOutcome::Accepted { location, .. }) => {
                // The session moved on (distribution signs the offset into the URL): the
                // new location is the one the registry will cancel.
                self.cancel_upload(&Session {
                    location,
                    chunk_min_length: None,
                });
                Ok(Some(probe.len() as f64 / seconds))
            }
            _ => {
                self.cancel_upload(&session);
                Ok(None)
            }
        }
    }

    /// `GET /v2/<name>/manifests/<reference>`, verifying a digest reference's content.
    pub fn fetch_manifest(&self, reference: &str) -> Result<RawManifest> {
        let request = self
            .request("GET", self.url(&format!("manifests/{reference}")))
            .header("accept", media::ACCEPT_MANIFESTS.join(", "));
        let response = self.transport.send(request)?;
        if !response.is_success() {
            return Err(self
                .transport
                .status_error(response, &format!("fetching manifest {reference}")));
        }
        let declared = response
            .header("content-type")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let header_digest = response.header("docker-content-digest").map(str::to_string);
        let bytes = response.read_body(MAX_JSON_BYTES)?;
        let manifest = RawManifest::new(declared, bytes);
        let expected = Digest::parse(reference)
            .ok()
            .or_else(|| header_digest.and_then(|d| Digest::parse(&d).ok()));
        if let Some(expected) = expected
            && expected != manifest.digest
        {
            return Err(Error::registry(format!(
                "{} served manifest {reference} with content {} instead of {expected}",
                self.host(),
                manifest.digest
            ))
            .hint("the registry or a proxy altered the manifest; refusing it"));
        }
        Ok(manifest)
    }

    /// `GET /v2/<name>/blobs/<digest>` from `offset` (a Range request when resuming).
    pub fn fetch_blob(&self, digest: &Digest, offset: u64) -> Result<Response> {
        let mut request = self.request("GET", self.url(&format!("blobs/{digest}")));
        if offset > 0 {
            request = request.header("range", format!("bytes={offset}-"));
        }
        let response = self.transport.send(request)?;
        match response.status {
            200 | 206 => Ok(response),
            _ => Err(self
                .transport
                .status_error(response, &format!("fetching blob {}", digest.short()))),
        }
    }
}

//! Which URLs may be written to disk: none that carries a credential. The secrets to
//! look for stay in this folder; layers above only learn yes or no.

/// Whether an upload URL may be written to disk. It must not carry credentials: no
/// user-info part, none of `secrets` (the password, tokens in use) anywhere in it, and
/// no query parameter named like a credential. Signed upload state (`_state`) and
/// upload ids are not credentials: they only let the holder continue this one upload.
pub(super) fn storable_url(url: &str, secrets: &[&str]) -> bool {
    if secrets.iter().any(|s| !s.is_empty() && url.contains(s)) {
        return false;
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if authority.contains('@') {
        return false;
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or(query);
    !query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair).to_ascii_lowercase();
        CREDENTIAL_PARAMETERS.iter().any(|c| name == *c)
            || name.contains("token")
            || name.contains("password")
            || name.contains("secret")
            || name.contains("signature")
            || name.contains("credential")
    })
}

/// Query parameter names that carry credentials in registries and storage back ends
/// (S3 presigned URLs, Azure SAS, OAuth-style bearer tokens in the query).
const CREDENTIAL_PARAMETERS: [&str; 8] = [
    "access_token",
    "auth",
    "authorization",
    "jwt",
    "key",
    "sig",
    "x-amz-security-token",
    "apikey",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_are_never_storable() {
        let secrets = ["s3cr3t-password", "eyJhbGciOi.token.sig"];
        for url in [
            "https://r/v2/a/blobs/uploads/u?_state=abc",
            "https://r/v2/a/blobs/uploads/u",
            "/v2/a/blobs/uploads/u?_state=x&digest=sha256:1",
        ] {
            assert!(storable_url(url, &secrets), "{url}");
        }
        for url in [
            "https://r/v2/a/blobs/uploads/u?token=abc",
            "https://r/v2/a/blobs/uploads/u?access_token=abc",
            "https://user:pw@r/v2/a/blobs/uploads/u",
            "https://s3.example.com/b?X-Amz-Signature=1&X-Amz-Credential=2",
            "https://acct.blob.core.windows.net/c?sv=1&sig=abc",
            "https://r/v2/a/blobs/uploads/eyJhbGciOi.token.sig",
            "https://r/v2/a/blobs/uploads/u?_state=s3cr3t-password",
        ] {
            assert!(!storable_url(url, &secrets), "{url}");
        }
    }
}

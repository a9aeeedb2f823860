use super::*;

const SHA256: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

fn sha512() -> String {
    format!("sha512:{}", "f".repeat(128))
}

fn parse(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn reason(s: &str) -> String {
    match Reference::parse(s) {
        Ok(r) => panic!("{s:?} should be rejected, got {r}"),
        Err(e) => e.reason().to_string(),
    }
}

/// (input, registry, repository, tag, digest)
type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

fn check_valid(cases: &[Case]) {
    for &(input, registry, repository, tag, digest) in cases {
        let r = parse(input);
        assert_eq!(r.registry(), registry, "registry of {input:?}");
        assert_eq!(r.repository(), repository, "repository of {input:?}");
        assert_eq!(r.tag(), tag, "tag of {input:?}");
        assert_eq!(r.digest(), digest, "digest of {input:?}");
        assert_eq!(parse(&r.to_string()), r, "round trip of {input:?}");
    }
}

fn check_invalid(cases: &[(&str, &str)]) {
    for &(input, expected) in cases {
        let got = reason(input);
        assert!(
            got.contains(expected),
            "{input:?}: reason {got:?} should mention {expected:?}"
        );
    }
}

#[test]
fn familiar_names_default_to_docker_hub() {
    check_valid(&[
        ("ubuntu", "docker.io", "library/ubuntu", None, None),
        (
            "ubuntu:22.04",
            "docker.io",
            "library/ubuntu",
            Some("22.04"),
            None,
        ),
        ("user/app", "docker.io", "user/app", None, None),
        (
            "docker.io/ubuntu",
            "docker.io",
            "library/ubuntu",
            None,
            None,
        ),
        (
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            None,
            None,
        ),
        (
            "index.docker.io/library/debian",
            "docker.io",
            "library/debian",
            None,
            None,
        ),
        (
            "index.docker.io/debian",
            "docker.io",
            "library/debian",
            None,
            None,
        ),
        (
            "registry-1.docker.io/user/app:1",
            "docker.io",
            "user/app",
            Some("1"),
            None,
        ),
        ("DOCKER.IO/foo", "docker.io", "library/foo", None, None),
        (
            "docker.io/library",
            "docker.io",
            "library/library",
            None,
            None,
        ),
        ("test_com", "docker.io", "library/test_com", None, None),
        ("store/foo/bar", "docker.io", "store/foo/bar", None, None),
    ]);
}

#[test]
fn single_component_with_colon_is_name_and_tag_not_registry() {
    check_valid(&[
        (
            "test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            None,
        ),
        (
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        ),
        (
            "192.168.1.1",
            "docker.io",
            "library/192.168.1.1",
            None,
            None,
        ),
        (
            "192.168.1.1:tag",
            "docker.io",
            "library/192.168.1.1",
            Some("tag"),
            None,
        ),
        (
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            None,
        ),
        (
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        ),
        (
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
        ),
    ]);
}

#[test]
fn explicit_registries_are_kept_as_written() {
    check_valid(&[
        ("localhost/foo", "localhost", "foo", None, None),
        ("localhost:5000/foo", "localhost:5000", "foo", None, None),
        (
            "127.0.0.1:5000/ns/app:v1",
            "127.0.0.1:5000",
            "ns/app",
            Some("v1"),
            None,
        ),
        (
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        ),
        ("test:5000/repo", "test:5000", "repo", None, None),
        ("test-com:8080/foo", "test-com:8080", "foo", None, None),
        ("Example.COM/foo", "Example.COM", "foo", None, None),
        ("example.com:65535/a", "example.com:65535", "a", None, None),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
    ]);
}

#[test]
fn ipv6_registries_need_brackets_and_may_have_a_port() {
    check_valid(&[
        ("[::1]:5000/foo:bar", "[::1]:5000", "foo", Some("bar"), None),
        ("[2001:db8::1]/x", "[2001:db8::1]", "x", None, None),
        (
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            None,
            None,
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        ),
        (
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000",
            "docker/docker",
            None,
            None,
        ),
        ("[FC00::1]/a", "[FC00::1]", "a", None, None),
    ]);
}

#[test]
fn digests_and_tag_plus_digest() {
    let s512 = sha512();
    let with_512 = format!("xn--7o8h.com/myimage:xn--7o8h.com@{s512}");
    let hub_digest = format!("busybox:latest@{SHA256}");
    let port_digest = format!("test:5000/repo@{SHA256}");
    let v6_both = format!("[2001:db8::1]:5000/repo:tag@{SHA256}");
    check_valid(&[
        (
            &hub_digest,
            "docker.io",
            "library/busybox",
            Some("latest"),
            Some(SHA256),
        ),
        (&port_digest, "test:5000", "repo", None, Some(SHA256)),
        (
            &v6_both,
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            Some(SHA256),
        ),
        (
            &with_512,
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(&s512),
        ),
    ]);
    assert_eq!(
        parse(&hub_digest).to_string(),
        format!("docker.io/library/{hub_digest}")
    );
}

#[test]
fn deep_paths_and_separators() {
    check_valid(&[
        ("a/b/c/d/e/f", "docker.io", "a/b/c/d/e/f", None, None),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        ),
        (
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
            None,
            None,
        ),
        (
            "dock__er/docker",
            "docker.io",
            "dock__er/docker",
            None,
            None,
        ),
        ("d/docker", "docker.io", "d/docker", None, None),
        ("jess/t", "docker.io", "jess/t", None, None),
        (
            "ns/a.b_c__d-e--f",
            "docker.io",
            "ns/a.b_c__d-e--f",
            None,
            None,
        ),
    ]);
}

#[test]
fn hex_names_are_ids_unless_qualified() {
    let qualified = format!("docker.io/{HEX64}");
    check_valid(&[
        (
            &qualified,
            "docker.io",
            &format!("library/{HEX64}"),
            None,
            None,
        ),
        (
            &HEX64[..63],
            "docker.io",
            &format!("library/{}", &HEX64[..63]),
            None,
            None,
        ),
        (
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io",
            "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            None,
            None,
        ),
    ]);
    check_invalid(&[(HEX64, "image ID")]);
}

#[test]
fn rejects_malformed_input_with_a_specific_reason() {
    check_invalid(&[
        ("", "empty"),
        (" ubuntu", "whitespace"),
        ("ubuntu latest", "whitespace"),
        ("ubuntu\n", "whitespace"),
        ("ub\u{0}untu", "control"),
        ("ubüntu", "non-ASCII"),
        ("🐳", "non-ASCII"),
        (":justtag", "missing repository name"),
        ("https://github.com/docker/docker", "URL"),
        ("aa/asdf$$^/aa", "invalid repository path component"),
        ("-docker", "invalid repository path component"),
        ("docker-/docker", "invalid repository path component"),
        ("-docker-/docker", "invalid repository path component"),
        ("____/____", "invalid repository path component"),
        ("_docker/_docker", "invalid repository path component"),
        ("docker/dock..er", "invalid repository path component"),
        ("docker/dock_.er", "invalid repository path component"),
        ("docker/dock-.er", "invalid repository path component"),
        // A dot in the first component makes it a registry host.
        ("dock..er/docker", "empty label"),
        ("dock_.er/docker", "invalid registry"),
        ("dock-.er/docker", "invalid registry"),
        ("dock___er/docker", "invalid repository path component"),
        ("docker///docker", "empty component"),
        ("docker.io/docker///docker", "empty component"),
        ("docker/", "end with '/'"),
        ("/docker", "start with '/'"),
        ("docker.io/", "missing repository path"),
    ]);
}

#[test]
fn rejects_uppercase_repository_paths() {
    check_invalid(&[
        ("Uppercase:tag", "repository name must be lowercase"),
        ("Foo/bar", "repository name must be lowercase"),
        ("docker/Docker", "repository name must be lowercase"),
        (
            "docker.io/docker/Docker",
            "repository name must be lowercase",
        ),
        (
            "test:5000/Uppercase/lowercase:tag",
            "repository name must be lowercase",
        ),
    ]);
}

#[test]
fn rejects_bad_registries() {
    check_invalid(&[
        ("-docker.io/docker/docker", "invalid registry"),
        ("example..com/foo", "empty label"),
        ("example.com./foo", "empty label"),
        ("exa_mple.com/foo", "host label"),
        ("localhost:/foo", "empty port"),
        ("localhost:0/foo", "between 1 and 65535"),
        ("localhost:65536/foo", "between 1 and 65535"),
        ("localhost:99999999999999999999/foo", "between 1 and 65535"),
        ("localhost:50a/foo", "numeric"),
        (":5000/foo", "empty host"),
        ("fc00::1:5000/debian", "brackets"),
        ("[2001:db8::1]", "without a repository path"),
        ("[2001:db8::1]:5000", "without a repository path"),
        ("[2001:db8::1]:tag", "without a repository path"),
        ("[fe80::1%eth0]:5000/repo", "zone"),
        ("[fe80::1%@invalidzone]:5000/repo", "zone"),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", "embedded IPv4"),
        ("[]:5000/foo", "empty IPv6"),
        ("[::1/foo", "unterminated"),
        ("[::1]x/foo", "after IPv6"),
        ("[1:2:3]/foo", "malformed IPv6"),
        ("[::1]:http/foo", "numeric"),
    ]);
}

#[test]
fn rejects_bad_tags_and_digests() {
    let long_tag = format!("foo:{}", "a".repeat(129));
    let short = format!("repo@sha256:{}", "f".repeat(34));
    let upper = format!(
        "repo@{}",
        SHA256.to_uppercase().replacen("SHA256", "sha256", 1)
    );
    let invalid_alg = format!("validname@invaliddigest:{}", "f".repeat(64));
    let md5 = format!("repo@md5:{}", "f".repeat(32));
    let no_name = format!("@{SHA256}");
    let two = format!("repo@{SHA256}@{SHA256}");
    check_invalid(&[
        ("foo:", "empty tag"),
        ("foo:-bar", "must start with"),
        ("foo:.bar", "must start with"),
        ("foo:ba$r", "invalid character '$'"),
        ("foo:a:b", "invalid character ':'"),
        (&long_tag, "at most 128"),
        ("repo@", "empty digest"),
        ("repo@sha256", "sha256:<hex>"),
        ("repo@:abc", "missing its algorithm"),
        (&short, "64 hex characters, found 34"),
        (&upper, "lowercase hexadecimal"),
        (&invalid_alg, "unsupported digest algorithm"),
        (&md5, "unsupported digest algorithm"),
        (&no_name, "missing repository name"),
        (&two, "found 136"),
    ]);
    let max_tag = format!("foo:_{}", "a".repeat(127));
    assert_eq!(parse(&max_tag).tag().map(str::len), Some(128));
}

#[test]
fn name_is_limited_to_255_characters_after_normalisation() {
    let at_limit = format!("example.com/{}", "a".repeat(243));
    assert_eq!(parse(&at_limit).repository_reference().len(), 255);
    let tagged = format!("{at_limit}:{}", "t".repeat(128));
    assert_eq!(parse(&tagged).tag().map(str::len), Some(128));

    let over = format!("example.com/{}", "a".repeat(244));
    let hub_over = format!("{}a:tag", "a/".repeat(127));
    let namespace = format!("{}/docker", "this_is_too_long".repeat(16));
    check_invalid(&[
        (&over, "more than 255"),
        (&hub_over, "more than 255"),
        (&namespace, "more than 255"),
    ]);
    let hub_fits = "a".repeat(NAME_MAX_LEN - "docker.io/library/".len());
    assert_eq!(parse(&hub_fits).repository_reference().len(), 255);
    check_invalid(&[(&format!("{hub_fits}a"), "more than 255")]);
}

#[test]
fn accessors_and_display() {
    let r = parse("ubuntu");
    assert_eq!(r.to_string(), "docker.io/library/ubuntu");
    assert_eq!(r.api_host(), "registry-1.docker.io");
    assert_eq!(r.manifest_reference(), "latest");
    assert_eq!(r.tag_or_latest(), "latest");
    assert_eq!(r.repository_reference(), "docker.io/library/ubuntu");

    let r = parse(&format!("localhost:5000/app:1.0@{SHA256}"));
    assert_eq!(r.api_host(), "localhost:5000");
    assert_eq!(r.manifest_reference(), SHA256);
    assert_eq!(r.tag_or_latest(), "1.0");
    assert_eq!(r.to_string(), format!("localhost:5000/app:1.0@{SHA256}"));

    let r: Reference = "ghcr.io/o/app:2".parse().unwrap();
    assert_eq!(r.manifest_reference(), "2");
    assert_eq!(r.to_string(), "ghcr.io/o/app:2");
}

#[test]
fn with_tag_replaces_tag_and_drops_digest() {
    let r = parse(&format!("example.com/app:old@{SHA256}"));
    let t = r.with_tag("new").unwrap();
    assert_eq!((t.tag(), t.digest()), (Some("new"), None));
    assert_eq!(t.to_string(), "example.com/app:new");
    let err = r.with_tag("-bad").unwrap_err();
    assert_eq!(err.input(), "example.com/app:-bad");
    assert!(err.reason().contains("must start with"));
}

#[test]
fn with_digest_keeps_tag() {
    let r = parse("example.com/app:1");
    let d = r.with_digest(SHA256).unwrap();
    assert_eq!((d.tag(), d.digest()), (Some("1"), Some(SHA256)));
    assert_eq!(parse(&d.to_string()), d);
    let err = r.with_digest("md5:abc").unwrap_err();
    assert!(err.reason().contains("unsupported digest algorithm"));
    assert!(r.with_digest("sha256:abc").is_err());
}

#[test]
fn errors_never_echo_a_password_from_the_input() {
    for (input, shown) in [
        (
            "https://user:hunter2@host.com/app",
            "https://user:***@host.com/app",
        ),
        (
            "http://user:hunter2@host.com:5000/a/b:1",
            "http://user:***@host.com:5000/a/b:1",
        ),
        ("https://hunter2@host.com/app", "https://***@host.com/app"),
        (
            "https://user:p@hunter2@host.com/app",
            "https://user:***@host.com/app",
        ),
        ("user:hunter2@host.com/app", "user:***@host.com/app"),
        ("user:hunter2@host.com", "user:***@host.com"),
        ("hunter2@host.com/app", "***@host.com/app"),
    ] {
        let err = parse_target(input).unwrap_err();
        assert_eq!(err.input(), shown, "{input:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    // Digest references keep what the user typed.
    let digest = format!("repo:tag@sha256:{}", "f".repeat(10));
    assert_eq!(Reference::parse(&digest).unwrap_err().input(), digest);
    assert_eq!(Reference::parse("repo@").unwrap_err().input(), "repo@");
}

#[test]
fn error_message_names_input_and_reason() {
    let err = Reference::parse("Foo/bar").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"invalid reference "Foo/bar": repository name must be lowercase"#
    );
    let huge = "A".repeat(100_000);
    let message = Reference::parse(&huge).unwrap_err().to_string();
    assert!(
        message.len() < 400,
        "long inputs are truncated: {}",
        message.len()
    );
    let err: Box<dyn std::error::Error> = Box::new(Reference::parse("").unwrap_err());
    assert!(err.to_string().contains("empty"));
}

#[test]
fn is_loopback_ignores_port() {
    let cases = [
        ("localhost/a", true),
        ("localhost:5000/a", true),
        ("LocalHost:80/a", true),
        ("127.0.0.1:5000/a", true),
        ("127.1.2.3/a", true),
        ("[::1]:5000/a", true),
        ("[::1]/a", true),
        ("[0:0:0:0:0:0:0:1]/a", true),
        ("128.0.0.1/a", false),
        ("10.0.0.1:5000/a", false),
        ("ubuntu", false),
        ("localhost:5000", false),
        ("[2001:db8::1]/x", false),
        ("localhost.example.com/a", false),
        ("127.0.0.1.nip.io/a", false),
    ];
    for (input, expected) in cases {
        assert_eq!(parse(input).is_loopback(), expected, "{input:?}");
    }
}

#[test]
fn parse_target_accepts_urls_and_bare_references() {
    let cases = [
        (
            "https://registry.example.com/ns/app:1.0",
            Some(Scheme::Https),
            "registry.example.com/ns/app:1.0",
        ),
        (
            "https://registry.example.com/ns/app:1.0/",
            Some(Scheme::Https),
            "registry.example.com/ns/app:1.0",
        ),
        (
            "http://localhost:5000/app",
            Some(Scheme::Http),
            "localhost:5000/app",
        ),
        (
            "HTTPS://Registry.Example.com/app",
            Some(Scheme::Https),
            "Registry.Example.com/app",
        ),
        (
            "http://[::1]:5000/foo:bar",
            Some(Scheme::Http),
            "[::1]:5000/foo:bar",
        ),
        (
            "https://index.docker.io/ubuntu",
            Some(Scheme::Https),
            "docker.io/library/ubuntu",
        ),
        ("ns/app:1.0", None, "docker.io/ns/app:1.0"),
        ("localhost:5000/app/", None, "localhost:5000/app"),
    ];
    for (input, scheme, display) in cases {
        let (got_scheme, r) = parse_target(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got_scheme, scheme, "{input:?}");
        assert_eq!(r.to_string(), display, "{input:?}");
    }
}

#[test]
fn parse_target_rejects_other_url_parts() {
    let cases = [
        ("ftp://host.com/app", "unsupported URL scheme"),
        ("https://host.com/app?x=1", "query"),
        ("https://host.com/app#frag", "fragment"),
        ("https://user:pw@host.com/app", "credentials"),
        ("https://host.com/v2/app/manifests/1", "/v2/"),
        ("https://host.com/v2/", "/v2/"),
        ("https://host.com", "no repository path"),
        ("https://host.com/", "no repository path"),
        ("https://", "empty"),
        ("https:///app", "no registry host"),
        ("https://myhost/app", "not recognised as a registry host"),
        ("https://host.com/app//", "end with '/'"),
        ("https://host.com/app:", "empty tag"),
        ("https:// host.com/app", "whitespace"),
        ("https://Host.com/App", "lowercase"),
        ("/", "empty"),
        ("", "empty"),
    ];
    for (input, expected) in cases {
        let err = parse_target(input).unwrap_err();
        if !input.contains('@') {
            assert_eq!(err.input(), input);
        }
        assert!(err.reason().contains(expected), "{input:?}: {err}");
    }
}

mod robustness;

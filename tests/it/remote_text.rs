//! Text from outside never drives the terminal: a registry's error message, and names and
//! platforms from an archive or cache, reach stdout and stderr with their escape
//! sequences made inert and their length cut.

use crate::fixtures as fx;
use crate::support::faults::{Fault, FaultProxy, Match, Mode, Rule};
use crate::support::{Pusher, RegistryOptions, TestRegistry, workspace_tmp};

const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07\u{9b}31mgotcha";

fn assert_inert(text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| matches!(c, '\x1b' | '\x07' | '\x7f' | '\u{80}'..='\u{9f}')),
        "control characters reached the terminal: {text:?}"
    );
}

#[test]
fn a_registry_error_message_reaches_stderr_without_escape_sequences() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    proxy.add(Rule::new(Match::any(), Fault::respond_error(403, "DENIED", HOSTILE)).always());
    let dir = workspace_tmp();
    let archive = dir.path().join("image.tar");
    fx::write_docker25(&archive, &[fx::hostile_image()]).unwrap();
    let target = format!("http://{}/hostile/app:1", proxy.host());
    let run = Pusher::push(
        dir.path(),
        &archive,
        &target,
        &["-q", "--retry-attempts", "0"],
    )
    .run();
    assert!(!run.panicked(), "{}", run.stderr);
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("gotcha"), "{}", run.stderr);
    assert!(run.stderr.contains("]0;pwned"), "{}", run.stderr);
    assert_inert(&run.stderr);
    assert_inert(&run.stdout);
}

#[test]
fn list_shows_hostile_cached_names_and_platforms_inert_and_cut() {
    let dir = workspace_tmp();
    let archive = dir.path().join("image.tar");
    let arch = format!("{}{}", HOSTILE, "a".repeat(70_000));
    let image = fx::TestImage::new(0x7E47, &[4_096], false, ("linux", &arch));
    fx::write_docker25(&archive, &[(image, vec!["evil/app:1".to_string()])]).unwrap();
    let archive_arg = archive.display().to_string();
    let extract = Pusher::new(dir.path(), &["extract", "-f", &archive_arg, "-q"]).run();
    assert_eq!(extract.code, Some(0), "{}", extract.stderr);
    assert_inert(&extract.stderr);

    let run = Pusher::new(dir.path(), &["list"]).run();
    assert!(!run.panicked(), "{}", run.stderr);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_inert(&run.stdout);
    assert_inert(&run.stderr);
    assert!(run.stdout.contains("evil/app:1"), "{}", run.stdout);
    assert!(run.stdout.contains("gotcha"), "{}", run.stdout);
    assert!(
        run.stdout.lines().all(|l| l.chars().count() < 1_000),
        "{}",
        run.stdout
    );

    // The JSON keeps the data exact for scripts, escaped so a terminal shows it inert.
    let json = Pusher::new(dir.path(), &["list", "--json"]).run();
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    assert_inert(&json.stdout);
    let listed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let platform = listed[0]["platforms"][0].as_str().unwrap();
    assert!(platform.contains(HOSTILE), "{platform:?}");
}

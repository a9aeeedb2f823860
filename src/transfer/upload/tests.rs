use super::*;

fn session(location: &str) -> Session {
    Session {
        location: location.into(),
        chunk_min_length: None,
    }
}

#[test]
fn a_new_empty_session_means_the_old_one_was_lost() {
    let blob = Blob {
        digest: crate::image::digest::Digest::of(b"x"),
        size: 100,
        media_type: String::new(),
    };
    let mut transfer = Transfer::new(&blob, Budget::for_blob(&RetryPolicy::default(), 100, 10));
    transfer.reused = 40;
    let old = session("http://r/v2/a/blobs/uploads/one?_state=1");
    let same = session("http://r/v2/a/blobs/uploads/one?_state=2");
    assert!(!transfer.restart_if_lost(&old, &same, 0));
    assert!(!transfer.restart_if_lost(&old, &same, 60));
    assert_eq!(transfer.reused, 40);
    let fresh = session("http://r/v2/a/blobs/uploads/two?_state=1");
    assert!(transfer.restart_if_lost(&old, &fresh, 0));
    assert_eq!(transfer.reused, 0);
}

#[test]
fn resent_bytes_are_what_went_up_beyond_one_copy() {
    let blob = Blob {
        digest: crate::image::digest::Digest::of(b"x"),
        size: 100,
        media_type: String::new(),
    };
    let mut transfer = Transfer::new(&blob, Budget::for_blob(&RetryPolicy::default(), 100, 10));
    transfer.reused = 30;
    transfer.sent.store(90, Ordering::Relaxed);
    assert_eq!(
        transfer.outcome(),
        Outcome::Uploaded {
            sent: 90,
            reused: 30,
            resent: 20,
            resumes: 0
        }
    );
}

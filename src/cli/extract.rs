//! `extract`: the flags of the extract subcommand.

use argh::FromArgs;

#[derive(FromArgs, Debug, Default)]
/// Copy the images of an archive into the local cache, verifying every blob (alias: e).
#[argh(
    subcommand,
    name = "extract",
    example = "docker-image-pusher extract -f app.tar",
    example = "docker-image-pusher extract -f images.tar --source-tag app:1.0 --cache-dir /srv/cache",
    note = "Reads every format push reads: docker save (any version), OCI archives, either gzipped. Every image of the archive is extracted unless --source-tag picks one. Environment: DOCKER_PUSHER_CACHE_DIR, DOCKER_PUSHER_VERBOSE.",
    error_code(2, "usage error"),
    error_code(
        3,
        "bad input: unreadable, malformed or corrupt archive, or an unwritable cache"
    )
)]
pub struct ExtractArgs {
    /// the archive: docker save output, an OCI archive, or either gzipped
    #[argh(option, short = 'f')]
    pub file: String,

    /// extract only the image with this tag or name:tag
    #[argh(option)]
    pub source_tag: Option<String>,

    /// cache the image under this name (registry/repository:tag) instead of the archive's
    #[argh(option)]
    pub name: Option<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show every blob
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the result lines
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

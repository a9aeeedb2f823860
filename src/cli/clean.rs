//! `clean`: the flags of the clean subcommand.

use argh::FromArgs;

#[derive(FromArgs, Debug, Default)]
/// Remove images from the local cache, or everything (alias: c).
#[argh(
    subcommand,
    name = "clean",
    example = "docker-image-pusher clean registry.example.com/team/app:1.0",
    example = "docker-image-pusher clean",
    note = "With images, removes them and every blob no other cached image uses. With none, removes every file the tool created there (files it did not create stay). Partial downloads of interrupted pulls go either way. Only a directory the tool made (oci-layout and the docker-image-pusher-cache marker) is cleaned; symlinks are never followed. Environment: DOCKER_PUSHER_CACHE_DIR."
)]
pub struct CleanArgs {
    /// images to remove (reference, tag or digest); none means everything
    #[argh(positional)]
    pub images: Vec<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show what would be removed, remove nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// print only the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

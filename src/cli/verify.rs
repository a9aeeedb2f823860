//! `verify`: the flags of the verify subcommand.

use argh::FromArgs;

#[derive(FromArgs, Debug, Default)]
/// Re-hash the cache's blobs and report any damage.
#[argh(
    subcommand,
    name = "verify",
    example = "docker-image-pusher verify",
    example = "docker-image-pusher verify registry.example.com/team/app:1.0 --cache-dir /mnt/usb/cache",
    note = "Exits 0 when everything is intact, 3 when a blob is damaged or an image incomplete. Environment: DOCKER_PUSHER_CACHE_DIR.",
    error_code(3, "damage found")
)]
pub struct VerifyArgs {
    /// images to check (reference, tag or digest); none means every blob in the cache
    #[argh(positional)]
    pub images: Vec<String>,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// delete damaged blobs, so the next pull or extract stores good copies
    #[argh(switch)]
    pub remove_damaged: bool,

    /// how many blobs to hash at once (default: the number of CPUs, at most 4)
    #[argh(option)]
    pub max_concurrent: Option<usize>,

    /// print only problems and the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

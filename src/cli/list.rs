//! `list`: the flags of the list subcommand.

use argh::FromArgs;

#[derive(FromArgs, Debug, Default)]
/// Show the images in the local cache (aliases: l, ls).
#[argh(
    subcommand,
    name = "list",
    example = "docker-image-pusher list",
    example = "docker-image-pusher list --json --cache-dir /mnt/usb/cache",
    note = "Environment: DOCKER_PUSHER_CACHE_DIR."
)]
pub struct ListArgs {
    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// print a JSON array instead of the table
    #[argh(switch)]
    pub json: bool,
}

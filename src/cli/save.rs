//! `save`: the flags of the save subcommand.

use argh::FromArgs;

#[derive(FromArgs, Debug, Default)]
/// Write cached images to one archive that docker load, skopeo and extract read.
#[argh(
    subcommand,
    name = "save",
    example = "docker-image-pusher save registry.example.com/team/app:1.0 busybox:latest -o /mnt/usb/images.tar",
    note = "The archive has the layout docker save writes from Docker 25 on (an OCI image layout plus manifest.json). Environment: DOCKER_PUSHER_CACHE_DIR."
)]
pub struct SaveArgs {
    /// images to save (reference, tag or digest)
    #[argh(positional)]
    pub images: Vec<String>,

    /// the archive to write
    #[argh(option, short = 'o')]
    pub output: String,

    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// show every blob
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print only errors and the result line
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// print a machine-readable JSON summary on stdout
    #[argh(switch)]
    pub json: bool,
}

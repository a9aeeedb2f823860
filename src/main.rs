fn main() {
    let mut args = std::env::args();
    let program = args
        .next()
        .unwrap_or_else(|| "docker-image-pusher".to_string());
    let program = std::path::Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(program);
    let args: Vec<String> = args.collect();
    std::process::exit(docker_image_pusher::cli::main_with_args(&program, &args));
}

fn main() {
    std::process::exit(s3logs::cli::main());
}

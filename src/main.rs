//! The `koko` binary: everything lives in the library; this only passes the
//! arguments and turns the outcome into the exit code.

fn main() {
    let code = koko::cli::main(std::env::args().collect());
    std::process::exit(code);
}

//! The `koko` binary: everything lives in the library; this only passes the
//! arguments and turns the outcome into the exit code.

/// Count every heap byte, so `koko run --max-memory` can stop a script
/// before the machine's memory runs out (see `koko::memory`).
#[global_allocator]
static ALLOCATOR: koko::memory::Counting = koko::memory::Counting;

fn main() {
    let code = koko::cli::main(std::env::args().collect());
    std::process::exit(code);
}

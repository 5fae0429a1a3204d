//! The `spex` command line: parses arguments, calls the library, prints.
fn main() {}

//! The `ferry` binary, built as a target of this package so that `cargo test -p
//! ferry-integration-tests` always runs the tests against current code.

fn main() -> std::process::ExitCode {
    ferry::main()
}

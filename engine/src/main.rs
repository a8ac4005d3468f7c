// mimalloc: an MTA's hot paths allocate and free many small short-lived objects (records, JSON
// values, buffers) across threads; glibc's allocator spent ~17 % of the CPU in malloc/free on the
// webhook relay benchmark (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ferry::main()
}

//! `cargo bench --bench decode`: SPEX decode time and accuracy on planted sparse functions
//! (20 coefficients of degree ≤ 3), the reference benchmark of the spectral-core issue.

fn main() -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for n in [64, 256, 1000, 4096, 10_000] {
        rows.push(spex::bench::decode_row(n, 21_504.max(n * 8), 20, 3, 0)?);
    }
    print!("{}", spex::bench::format_decode_table(&rows));
    Ok(())
}

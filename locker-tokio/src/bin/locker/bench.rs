//! `locker bench` (placeholder replaced below).
use std::process::ExitCode;

/// Options of `locker bench`.
#[derive(clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs, _secret: Option<Vec<u8>>) -> ExitCode {
    ExitCode::from(2)
}

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = paytool::cli::Cli::parse();
    match paytool::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", paytool::exit::message(&err));
            ExitCode::from(paytool::app::exit_code(&err))
        }
    }
}

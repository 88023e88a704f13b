use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = paytool::cli::Cli::parse();
    paytool::logging::init(&cli.global);
    match paytool::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", paytool::exit::message(&err));
            ExitCode::from(paytool::exit::code_for(&err))
        }
    }
}

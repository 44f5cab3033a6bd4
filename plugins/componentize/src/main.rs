//! `evfold-componentize IN.wasm OUT.wasm`: the componentizer library
//! ([`evfold_componentize::componentize_file`]) as a command-line tool. `evfold plugin build`
//! does the same in-process, after building the crate.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: evfold-componentize <module.wasm> <component.wasm>");
        return ExitCode::from(2);
    };
    match evfold_componentize::componentize_file(Path::new(input), Path::new(output)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("evfold-componentize: {input}: {message}");
            ExitCode::FAILURE
        }
    }
}

//! Tidy checks over the repository: the core does no IO (by source and by the imports of its
//! wasm32 build), every Rust file says what it is for, ARCHITECTURE.md names every crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repo root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "corpus" | "artifacts" | "node_modules") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_do_no_io() {
    let mut files = vec![];
    rust_files(&repo_root().join("core/src"), &mut files);
    assert!(files.len() > 5, "core sources not found");
    let forbidden = [
        "std::fs",
        "std::time",
        "std::thread",
        "std::net",
        "tokio",
        "SystemTime",
        "Instant::now",
        "thread_rng",
        "getrandom",
        "std::env",
    ];
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} mentions `{word}`: the core must not do IO", file.display());
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = vec![];
    rust_files(&repo_root(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` first line: {missing:#?}");
}

#[test]
fn architecture_md_names_every_workspace_member() {
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let members = manifest.split("members = [").nth(1).and_then(|s| s.split(']').next()).unwrap();
    for member in members.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()) {
        let top = member.split('/').next().unwrap();
        assert!(architecture.contains(&format!("`{top}/")), "ARCHITECTURE.md has no section for {member}");
    }
}

/// Builds `core/probe` for wasm32-wasip1 and checks it imports nothing that reads a clock, draws
/// randomness or touches files: proof, from the binary, that the core's machines do no IO.
#[test]
fn core_wasm_build_imports_no_clock_random_or_files() {
    let root = repo_root();
    let status = Command::new(root.join("scripts/wasm-cargo"))
        .args(["build", "--release", "-p", "evfold-core-probe", "--target", "wasm32-wasip1"])
        .env("CARGO_TARGET_DIR", root.join("target/wasm"))
        .current_dir(&root)
        .status()
        .expect("scripts/wasm-cargo runs (it installs the wasm32 target if missing)");
    assert!(status.success(), "building core/probe for wasm32-wasip1 failed");
    let wasm = root.join("target/wasm/wasm32-wasip1/release/evfold_core_probe.wasm");
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    let imports = wasm_imports(&bytes);
    let allowed = ["fd_write", "proc_exit", "environ_get", "environ_sizes_get"];
    for (module, name) in &imports {
        assert!(
            module == "wasi_snapshot_preview1" && allowed.contains(&name.as_str()),
            "core probe imports {module}::{name}; imports: {imports:?}"
        );
    }
}

/// (module, name) of every import of a core wasm module. A minimal reader of the binary format:
/// only the import section is decoded.
fn wasm_imports(bytes: &[u8]) -> Vec<(String, String)> {
    assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0", "not a wasm module");
    let mut at = 8;
    let mut imports = vec![];
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(bytes, &mut at) as usize;
        let end = at + size;
        if id == 2 {
            let count = leb(bytes, &mut at);
            for _ in 0..count {
                let module = name(bytes, &mut at);
                let field = name(bytes, &mut at);
                skip_import_desc(bytes, &mut at);
                imports.push((module, field));
            }
        }
        at = end;
    }
    imports
}

fn leb(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

fn name(bytes: &[u8], at: &mut usize) -> String {
    let len = leb(bytes, at) as usize;
    let text = String::from_utf8_lossy(&bytes[*at..*at + len]).into_owned();
    *at += len;
    text
}

fn skip_limits(bytes: &[u8], at: &mut usize) {
    let flags = bytes[*at];
    *at += 1;
    leb(bytes, at);
    if flags & 1 == 1 {
        leb(bytes, at);
    }
}

fn skip_import_desc(bytes: &[u8], at: &mut usize) {
    let kind = bytes[*at];
    *at += 1;
    match kind {
        0 => {
            leb(bytes, at); // function: type index
        }
        1 => {
            *at += 1; // table: reference type
            skip_limits(bytes, at);
        }
        2 => skip_limits(bytes, at), // memory
        3 => *at += 2,               // global: value type + mutability
        4 => {
            *at += 1; // tag: attribute + type index
            leb(bytes, at);
        }
        other => panic!("unknown import kind {other}"),
    }
}

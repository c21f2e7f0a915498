//! The schemas in `docs/info/` are what the report types give: a change of
//! a report's JSON shows up as a change of those files (regenerate them
//! with `BUFSYNC_BLESS=1 cargo test -p bufsync-info --test schema_files`,
//! and bump `schema::VERSION` when the change breaks readers).

use std::path::PathBuf;

use bufsync_info::schema;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/info")
}

#[test]
fn checked_in_schemas_match_the_types() {
    let bless = std::env::var("BUFSYNC_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for cmd in schema::COMMANDS {
        let want = serde_json::to_string_pretty(&schema::schema(cmd).unwrap()).unwrap() + "\n";
        let path = docs().join(format!("{cmd}.schema.json"));
        if bless {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            _ => stale.push(path.display().to_string()),
        }
    }
    assert!(
        stale.is_empty(),
        "stale schemas {stale:?}: run BUFSYNC_BLESS=1 cargo test -p bufsync-info --test schema_files"
    );
}

#[test]
fn every_command_has_a_schema_and_only_those() {
    for cmd in schema::COMMANDS {
        let s = schema::schema(cmd).unwrap();
        assert_eq!(
            s["properties"]["schema"]["const"],
            format!("bufsync-info.{cmd}")
        );
        assert_eq!(s["properties"]["version"]["const"], schema::VERSION);
    }
    assert!(schema::schema("help").is_none());
}

#[test]
fn the_schema_command_prints_it() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = bufsync_info::run(&["schema".into(), "paths".into()], &mut out, &mut err);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, schema::schema("paths").unwrap());
    let code = bufsync_info::run(&["schema".into(), "nope".into()], &mut out, &mut err);
    assert_eq!(code, 2);
}

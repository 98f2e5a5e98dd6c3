//! The journal on disk: torn tails, corruption, format versions.

use super::*;
use crate::events::Event;

fn warning(message: &str) -> Envelope {
    Envelope {
        ts: "2026-01-01T00:00:00Z".into(),
        run_id: "r1".into(),
        event: Event::Warning {
            host: None,
            message: message.into(),
        },
    }
}

fn line(message: &str) -> String {
    format!(
        "{{\"ts\":\"2026-01-01T00:00:00Z\",\"run_id\":\"r1\",\"event\":\"warning\",\"message\":\"{message}\"}}\n"
    )
}

/// A state directory whose run `r1` holds `text` as it is.
fn journal_with(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runs_dir(dir.path())).unwrap();
    std::fs::write(run_path(dir.path(), "r1"), text).unwrap();
    dir
}

fn messages(records: &[Envelope]) -> Vec<String> {
    records
        .iter()
        .map(|e| match &e.event {
            Event::Warning { message, .. } => message.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Regression: a kill -9 mid-write left half a line; the next writer
/// appended right after it, so its record joined the torn one and was lost.
#[test]
fn a_record_appended_after_a_torn_last_line_is_kept() {
    let torn = format!("{}{}", line("one"), &line("two")[..30]);
    let dir = journal_with(&torn);
    let mut writer = JournalWriter::open(dir.path(), "r1").unwrap();
    writer.append(&warning("three")).unwrap();
    writer.sync().unwrap();
    let records = read_run(dir.path(), "r1").unwrap();
    assert_eq!(messages(&records), ["one", "three"]);
}

#[test]
fn a_torn_line_without_any_complete_line_is_dropped_too() {
    let dir = journal_with(&line("one")[..10]);
    let mut writer = JournalWriter::open(dir.path(), "r1").unwrap();
    writer.append(&warning("two")).unwrap();
    writer.sync().unwrap();
    assert_eq!(messages(&read_run(dir.path(), "r1").unwrap()), ["two"]);
}

/// Regression: a line that does not parse in the middle of a journal was
/// skipped silently, so `resume` worked from a record with a hole in it.
#[test]
fn an_unparseable_line_before_the_end_is_an_error_naming_file_and_line() {
    let text = format!("{}{{not json\n{}", line("one"), line("three"));
    let dir = journal_with(&text);
    let error = read_run(dir.path(), "r1").unwrap_err().to_string();
    let path = run_path(dir.path(), "r1").display().to_string();
    assert!(error.contains(&path), "{error}");
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("corrupt"), "{error}");
}

#[test]
fn an_unparseable_terminated_last_line_is_corruption_too() {
    // The writer ends every record with a newline in the same write: a
    // complete line that does not parse was not torn by a kill.
    let text = format!("{}{{not json\n", line("one"));
    let dir = journal_with(&text);
    let error = read_run(dir.path(), "r1").unwrap_err().to_string();
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn records_carry_the_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = JournalWriter::open(dir.path(), "r1").unwrap();
    writer.append(&warning("one")).unwrap();
    writer.sync().unwrap();
    let text = std::fs::read_to_string(run_path(dir.path(), "r1")).unwrap();
    assert!(text.starts_with("{\"v\":1,\"ts\":"), "{text}");
    assert_eq!(messages(&read_run(dir.path(), "r1").unwrap()), ["one"]);
}

/// A journal holds the tails of step output: readable by its owner only.
#[test]
fn a_journal_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut writer = JournalWriter::open(dir.path(), "r1").unwrap();
    writer.append(&warning("one")).unwrap();
    writer.sync().unwrap();
    let mode = std::fs::metadata(run_path(dir.path(), "r1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn a_journal_without_versions_reads_as_version_1() {
    let dir = journal_with(&format!("{}{}", line("one"), line("two")));
    assert_eq!(
        messages(&read_run(dir.path(), "r1").unwrap()),
        ["one", "two"]
    );
}

/// Regression: a journal written by a newer fleetroll was read as if it
/// were ours, its unknown records skipped.
#[test]
fn a_journal_of_a_newer_format_version_is_refused() {
    let newer = line("two").replacen('{', "{\"v\":2,", 1);
    let dir = journal_with(&format!("{}{newer}", line("one")));
    let error = read_run(dir.path(), "r1").unwrap_err().to_string();
    assert!(error.contains("format version 2"), "{error}");
    assert!(error.contains("newer fleetroll"), "{error}");
    assert!(error.contains("line 2"), "{error}");
}
#[test]
fn an_unterminated_last_line_is_tolerated_and_reported_as_torn() {
    // Even one that happens to parse: its newline never made it, so the
    // record was never synced and nothing acted on it.
    for tail in [&line("two")[..25], line("two").trim_end()] {
        let dir = journal_with(&format!("{}{tail}", line("one")));
        let journal = read_journal(dir.path(), "r1").unwrap();
        assert_eq!(messages(&journal.records), ["one"]);
        let torn = journal.torn.expect("reported as torn");
        assert_eq!(torn.line, 2);
        assert_eq!(torn.bytes, tail.len());
    }
}

#[test]
fn creating_a_journal_syncs_every_directory_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut synced = Vec::new();
    let file = create_durably(&run_path(&state, "r1"), &mut |path: &Path| {
        synced.push(path.to_path_buf());
        Ok(())
    })
    .unwrap();
    drop(file);
    // The new state directory's entry in its parent, `runs/` in the state
    // directory, and the journal's entry in `runs/`.
    assert_eq!(
        synced,
        [dir.path().to_path_buf(), state.clone(), runs_dir(&state)]
    );
    // Opening it again still syncs `runs/`: a creator that died before its
    // sync leaves an entry only this can make durable.
    synced.clear();
    create_durably(&run_path(&state, "r1"), &mut |path: &Path| {
        synced.push(path.to_path_buf());
        Ok(())
    })
    .unwrap();
    assert_eq!(synced, [runs_dir(&state)]);
}

#[test]
fn the_latest_run_of_an_inventory_skips_other_inventories_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runs_dir(dir.path())).unwrap();
    let started = |id: &str, inventory: &str| {
        format!(
            "{{\"ts\":\"2026-01-01T00:00:00Z\",\"run_id\":\"{id}\",\"event\":\"run_started\",\"playbook\":\"p\",\"hosts\":1,\"batches\":1,\"failure_budget\":0,\"settings\":{{\"inventory\":\"{inventory}\",\"playbook\":\"/p.toml\",\"var_names\":[],\"limit\":[],\"accept_new_host_keys\":false}},\"plan\":[]}}\n"
        )
    };
    for (id, inventory) in [
        ("20260101T000000Z-0001", "/a.toml"),
        ("20260102T000000Z-0001", "/b.toml"),
        ("20260103T000000Z-0001", "/a.toml"),
        ("20260104T000000Z-0001", "/b.toml"),
    ] {
        std::fs::write(run_path(dir.path(), id), started(id, inventory)).unwrap();
    }
    // A run that died before its start record belongs to no inventory.
    std::fs::write(run_path(dir.path(), "20260105T000000Z-0001"), "").unwrap();
    assert_eq!(
        latest_run_of(dir.path(), Some("/a.toml")).unwrap(),
        "20260103T000000Z-0001"
    );
    assert_eq!(
        latest_run_of(dir.path(), Some("/b.toml")).unwrap(),
        "20260104T000000Z-0001"
    );
    assert_eq!(
        latest_run_of(dir.path(), None).unwrap(),
        "20260105T000000Z-0001"
    );
    let error = latest_run_of(dir.path(), Some("/c.toml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("/c.toml"), "{error}");
    assert_eq!(
        run_inventory(dir.path(), "20260102T000000Z-0001").unwrap(),
        Some("/b.toml".to_owned())
    );
}

/// Regression: a run that failed at once and the next one started in the
/// same second; the next one's random suffix sorted first, so `status` and
/// `resume` took the older run for the latest.
#[test]
fn runs_of_the_same_second_sort_by_their_first_record() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runs_dir(dir.path())).unwrap();
    let write = |id: &str, ts: &str| {
        std::fs::write(
            run_path(dir.path(), id),
            format!("{{\"v\":1,\"ts\":\"{ts}\",\"run_id\":\"{id}\",\"event\":\"warning\",\"message\":\"m\"}}\n"),
        )
        .unwrap();
    };
    write("20261129T215053Z-ffff", "2026-11-29T21:50:53.1Z");
    write("20261129T215053Z-0001", "2026-11-29T21:50:53.95Z");
    write("20261129T215052Z-8888", "2026-11-29T21:50:52.5Z");
    write("20261129T215054Z-0000", "2026-11-29T21:50:54.01Z");
    assert_eq!(
        run_ids(dir.path()),
        [
            "20261129T215052Z-8888",
            "20261129T215053Z-ffff",
            "20261129T215053Z-0001",
            "20261129T215054Z-0000"
        ]
    );
    assert_eq!(
        latest_run_of(dir.path(), None).unwrap(),
        "20261129T215054Z-0000"
    );
}

/// Issue 17: a group the disk takes only in part (ENOSPC mid-line) is cut
/// off again, so the file ends at the last whole line of the groups before
/// it; once there is room, the next writer's records follow it and the
/// journal reads back whole (a partial line left behind would have become
/// corruption in the middle of the file).
#[test]
fn a_group_the_disk_takes_only_in_part_leaves_no_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = JournalWriter::open(dir.path(), "r1")
        .unwrap()
        .full_after_lines(2, 60);
    writer.append(&warning("one")).unwrap();
    writer.sync().unwrap();
    writer.append(&warning("two")).unwrap();
    writer.append(&warning("three")).unwrap();
    let error = writer.sync().unwrap_err();
    assert!(error.to_string().contains("No space left"), "{error}");
    drop(writer);
    let text = std::fs::read_to_string(run_path(dir.path(), "r1")).unwrap();
    assert!(text.ends_with('\n'), "a partial line was left: {text:?}");
    assert_eq!(messages(&read_run(dir.path(), "r1").unwrap()), ["one"]);
    let mut writer = JournalWriter::open(dir.path(), "r1").unwrap();
    writer.append(&warning("four")).unwrap();
    writer.sync().unwrap();
    assert_eq!(
        messages(&read_run(dir.path(), "r1").unwrap()),
        ["one", "four"]
    );
}

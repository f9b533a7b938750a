//! `bucketfs status --json`: the facts of the text report as one JSON object, for scripts.
//!
//! The field names are a stable interface (README documents them): new fields may be added,
//! none renamed or removed. Times are ages in whole seconds at the moment of the report, as
//! the text report shows them; sizes are bytes.

use std::path::Path;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::fs::status::Status;

/// The report of the daemon `pid` serving `mountpoint`, as of `now`.
pub(super) fn status_json(status: &Status, mountpoint: &Path, pid: u32, now: SystemTime) -> Value {
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
    let unix_now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    json!({
        "mountpoint": mountpoint.display().to_string(),
        "pid": pid,
        "pending": {
            "files": status.pending,
            "bytes": status.pending_bytes,
            "oldest_age_seconds": status.oldest.map(age),
        },
        "not_stored": status.unsaved.iter().map(|p| json!({
            "key": p.entry.key,
            "bytes_written": p.entry.written.iter().map(|(s, e)| e - s).sum::<u64>(),
            "data_file": p.data.display().to_string(),
            "reason": p.reason,
            "age_seconds": unix_now.saturating_sub(p.at),
        })).collect::<Vec<_>>(),
        "conflicts": {
            "total": status.conflict_total,
            "recent": status.conflicts.iter().map(|c| json!({
                "key": c.key,
                "kept_as": c.kept_as,
                "age_seconds": age(c.at),
            })).collect::<Vec<_>>(),
        },
        "name_cache": {"entries": status.names, "limit": status.names_limit},
        "recent_failures": status.failures.iter().map(|f| json!({
            "key": f.key,
            "error": f.error,
            "age_seconds": age(f.at),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localfile::conflicts::Conflict;
    use crate::localfile::failures::Failure;
    use std::time::Duration;

    #[test]
    fn the_report_has_its_documented_fields() {
        let now = SystemTime::now();
        let status = Status {
            pending: 2,
            pending_bytes: 300,
            oldest: Some(now - Duration::from_secs(7)),
            failures: vec![Failure {
                key: "p/a".into(),
                error: "503 SlowDown".into(),
                at: now - Duration::from_secs(3),
            }],
            conflicts: vec![Conflict {
                key: "p/b".into(),
                kept_as: "p/b.conflict-h-1".into(),
                at: now - Duration::from_secs(1),
            }],
            conflict_total: 4,
            ..Status::default()
        };
        let v = status_json(&status, Path::new("/mnt/x"), 42, now);
        assert_eq!(v["mountpoint"], "/mnt/x");
        assert_eq!(v["pid"], 42);
        assert_eq!(
            v["pending"],
            json!({"files": 2, "bytes": 300, "oldest_age_seconds": 7})
        );
        assert_eq!(v["not_stored"], json!([]));
        assert_eq!(v["conflicts"]["total"], 4);
        assert_eq!(
            v["conflicts"]["recent"][0],
            json!({"key": "p/b", "kept_as": "p/b.conflict-h-1", "age_seconds": 1})
        );
        assert_eq!(
            v["recent_failures"][0],
            json!({"key": "p/a", "error": "503 SlowDown", "age_seconds": 3})
        );
    }

    #[test]
    fn nothing_pending_has_no_oldest_age() {
        let v = status_json(&Status::default(), Path::new("/m"), 1, SystemTime::now());
        assert_eq!(
            v["pending"],
            json!({"files": 0, "bytes": 0, "oldest_age_seconds": null})
        );
    }
}

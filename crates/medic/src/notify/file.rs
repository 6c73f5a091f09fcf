//! The file notifier: every alert appended to a JSON Lines file (`notify.file`), one object a line, as the JSON
//! webhook would receive it, and flushed to the file before the call returns. The file is bounded: once it holds
//! `notify.file_bytes_max` bytes it is renamed to `<file>.1` (replacing an older one) and a new file is started.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use heal::escalate::{Alert, Notifier};

/// Appends every alert to a JSON Lines file.
#[derive(Debug)]
pub struct FileNotifier {
    path: PathBuf,
    bytes_max: u64,
    file: Mutex<File>,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl FileNotifier {
    /// A notifier appending to `path` (created if missing), rotated past `bytes_max`.
    pub fn new(path: &Path, bytes_max: u64) -> anyhow::Result<FileNotifier> {
        let file = open(path).map_err(|e| {
            anyhow::anyhow!(
                "notify.file: cannot open {} for appending: {e}",
                path.display()
            )
        })?;
        Ok(FileNotifier {
            path: path.to_path_buf(),
            bytes_max,
            file: Mutex::new(file),
        })
    }

    fn rotated(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }
}

impl Notifier for FileNotifier {
    fn name(&self) -> &str {
        "file"
    }

    fn notify(&self, alert: &Alert) -> Result<(), String> {
        let mut line =
            serde_json::to_vec(alert).map_err(|e| format!("encoding alert {}: {e}", alert.key))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > 0 && len + line.len() as u64 > self.bytes_max {
            std::fs::rename(&self.path, self.rotated())
                .and_then(|()| open(&self.path))
                .map(|f| *file = f)
                .map_err(|e| {
                    format!(
                        "notify.file {}: rotating past file_bytes_max = {}: {e}",
                        self.path.display(),
                        self.bytes_max
                    )
                })?;
        }
        file.write_all(&line)
            .and_then(|()| file.flush())
            .map_err(|e| {
                format!(
                    "notify.file {}: {e}; alert {} not written",
                    self.path.display(),
                    alert.key
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heal::escalate::EscalationLevel;
    use heal::issue::Severity;

    #[test]
    fn alerts_are_lines_of_json_and_the_file_rotates_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let n = FileNotifier::new(&path, 600).unwrap();
        for i in 0..6 {
            n.notify(&Alert {
                key: format!("k{i}"),
                rule: "escalation".into(),
                level: EscalationLevel::Escalate,
                severity: Severity::Sev1,
                title: "t".repeat(50),
                resource: "r".into(),
                code: "c".into(),
                incident_id: Some(i),
                at: i,
                report: None,
            })
            .unwrap();
        }
        let lines = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let current = lines(&path);
        let old = lines(&dir.path().join("alerts.jsonl.1"));
        assert!(std::fs::metadata(&path).unwrap().len() <= 600);
        assert_eq!(current.last().unwrap()["key"], "k5");
        assert!(!old.is_empty() && current.len() + old.len() <= 6);
        assert!(
            old.iter()
                .chain(&current)
                .all(|a| a["rule"] == "escalation")
        );
        let e = FileNotifier::new(&dir.path().join("no/such/dir/a.jsonl"), 10).unwrap_err();
        assert!(e.to_string().contains("notify.file: cannot open"), "{e}");
    }
}

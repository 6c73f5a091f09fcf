//! `<data>/medic.url`: where the daemon holding a data directory answers, for commands given only `--data`.
//!
//! The store's `LOCK` names the holder (pid, host) but not its address, and `--listen` may differ from the
//! configuration's `server.listen`. So `serve` writes this small file once it listens — the URL on the first line
//! (an unspecified address such as `0.0.0.0` written as loopback), `pid=N` on the second — and removes it when it stops
//! cleanly. A file left by a crash is stale: readers check the pid against the `LOCK` holder, and use the daemon
//! answering at the URL only when the holder its `GET /health` states (pid, host, lock start time) is the one the
//! directory's `LOCK` names — the same pid may be another host's daemon on a shared volume, or a new process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The file's name inside the data directory.
pub const URL_FILE: &str = "medic.url";
/// The most bytes read from it (a URL and a pid).
pub const URL_FILE_BYTES_MAX: u64 = 1024;

/// The URL a local client should use for a daemon bound to `addr`: an unspecified address (`0.0.0.0`, `::`) is
/// reached through loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// `http://HOST:PORT`.
    pub url: String,
    /// The daemon's pid, when written.
    pub pid: Option<u32>,
}

/// Parses the file's text; `None` when it does not start with an `http://` URL.
pub fn parse(text: &str) -> Option<Advertised> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let url = lines.next()?;
    if !url.starts_with("http://")
        || url.len() <= "http://".len()
        || url.contains(char::is_whitespace)
    {
        return None;
    }
    let pid = lines
        .filter_map(|l| l.strip_prefix("pid="))
        .find_map(|p| p.parse().ok());
    Some(Advertised {
        url: url.to_string(),
        pid,
    })
}

/// Reads `<dir>/medic.url`; `None` when missing, too large or malformed.
pub fn read(dir: &Path) -> Option<Advertised> {
    use std::io::Read as _;
    let file = std::fs::File::open(dir.join(URL_FILE)).ok()?;
    let mut text = String::new();
    file.take(URL_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    parse(&text)
}

/// The file written by a running daemon; removed on drop if it still says what this daemon wrote.
#[derive(Debug)]
pub struct UrlFile {
    path: PathBuf,
    text: String,
}

impl UrlFile {
    /// Writes `<dir>/medic.url` for `url` and this process (through a temporary file and a rename, so a reader never
    /// sees half of it).
    pub fn write(dir: &Path, url: &str) -> std::io::Result<UrlFile> {
        let path = dir.join(URL_FILE);
        let tmp = dir.join(format!("{URL_FILE}.tmp"));
        let text = format!("{url}\npid={}\n", std::process::id());
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(UrlFile { path, text })
    }
}

impl Drop for UrlFile {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.text) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_through_loopback() {
        assert_eq!(
            local_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(local_url("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            local_url("127.0.0.1:7878".parse().unwrap()),
            "http://127.0.0.1:7878"
        );
    }

    #[test]
    fn parses_what_it_writes_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let _f = UrlFile::write(dir.path(), "http://127.0.0.1:9").unwrap();
            assert_eq!(
                read(dir.path()),
                Some(Advertised {
                    url: "http://127.0.0.1:9".into(),
                    pid: Some(std::process::id())
                })
            );
        }
        assert!(!dir.path().join(URL_FILE).exists(), "removed on drop");
        assert_eq!(read(dir.path()), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("ftp://x\npid=3"), None);
        assert_eq!(parse("http://"), None);
        assert_eq!(parse("http://a b"), None);
        assert_eq!(
            parse("http://h:1\npid=x"),
            Some(Advertised {
                url: "http://h:1".into(),
                pid: None
            })
        );
    }

    #[test]
    fn a_file_rewritten_by_another_daemon_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let f = UrlFile::write(dir.path(), "http://127.0.0.1:9").unwrap();
        std::fs::write(dir.path().join(URL_FILE), "http://127.0.0.1:10\npid=1\n").unwrap();
        drop(f);
        assert_eq!(read(dir.path()).unwrap().url, "http://127.0.0.1:10");
    }
}

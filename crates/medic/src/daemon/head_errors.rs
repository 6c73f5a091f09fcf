//! Answers to request heads the HTTP parser refuses before any handler runs: a URL over its limit (414), more header
//! fields or head bytes than the parser takes (431), a malformed method, URL, header or version (400).
//!
//! hyper answers those itself, with an empty body and `connection: close`, and offers no hook to shape the answer;
//! every other failure the API gives is `{"error": "..."}` naming what was wrong and the limit. So the connection's
//! socket wrapper ([`super::listen`]) hands every write to [`Rewrite::answer_for`] first: a write that is exactly
//! such an automatic answer (a whole head, status 400, 414 or 431, `content-length: 0`, `connection: close`) is
//! replaced by the same status with a JSON body. Handlers never produce that shape (their errors carry a JSON
//! body), so nothing else is touched.
//!
//! The limits are fixed here and set on the parser by [`configure`], so the numbers the answers name are the
//! numbers in force: [`HEAD_FIELDS_MAX`] header fields, [`HEAD_BYTES_MAX`] bytes of request head, and hyper's own
//! fixed URL limit [`URL_BYTES_MAX`].

use hyper::server::conn::http1::Builder;

/// The most header fields a request head may carry (hyper's default, set explicitly).
pub const HEAD_FIELDS_MAX: usize = 100;

/// The most bytes of a request head buffered while it is parsed (hyper's default, set explicitly).
pub const HEAD_BYTES_MAX: usize = 8192 + 4096 * 100;

/// The longest URL hyper parses, in bytes (fixed inside hyper: `u16::MAX - 1`).
pub const URL_BYTES_MAX: usize = (u16::MAX - 1) as usize;

/// Sets the head limits this module names on a connection builder.
pub fn configure(builder: &mut Builder) {
    builder
        .max_headers(HEAD_FIELDS_MAX)
        .max_buf_size(HEAD_BYTES_MAX);
}

/// An automatic answer being replaced: the bytes to send instead, and how many of them are sent.
#[derive(Debug)]
pub struct Rewrite {
    bytes: Vec<u8>,
    sent: usize,
}

impl Rewrite {
    /// The replacement for `written`, if it is one whole automatic answer of the parser.
    pub fn answer_for(written: &[u8]) -> Option<Self> {
        let head = std::str::from_utf8(written).ok()?;
        let rest = head.strip_prefix("HTTP/1.1 ")?;
        if !head.ends_with("\r\n\r\n") || head.matches("\r\n\r\n").count() != 1 {
            return None;
        }
        let lower = head.to_ascii_lowercase();
        if !lower.contains("\r\ncontent-length: 0\r\n")
            || !lower.contains("\r\nconnection: close\r\n")
        {
            return None;
        }
        let (status, message) = match rest.get(..4)? {
            "400 " => (
                "400 Bad Request",
                "malformed request head: the method, URL, a header or the HTTP version \
                 could not be parsed"
                    .to_string(),
            ),
            "414 " => (
                "414 URI Too Long",
                format!(
                    "request URL is over the limit of {URL_BYTES_MAX} bytes (url_bytes_max, fixed)"
                ),
            ),
            "431 " => (
                "431 Request Header Fields Too Large",
                format!(
                    "request head is over a limit: at most {HEAD_FIELDS_MAX} header fields (head_fields_max) and \
                 {HEAD_BYTES_MAX} bytes (head_bytes_max)"
                ),
            ),
            _ => return None,
        };
        let body = serde_json::json!({ "error": message }).to_string();
        let bytes = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Some(Self { bytes, sent: 0 })
    }

    /// What is still to be sent.
    pub fn unsent(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    /// Notes `n` more bytes sent; whether all are.
    pub fn advance(&mut self, n: usize) -> bool {
        self.sent = (self.sent + n).min(self.bytes.len());
        self.sent == self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Mon, 07 Dec 2026 20:40:35 GMT\r\n";

    fn automatic(status: &str) -> String {
        format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n")
    }

    fn body_of(r: &Rewrite) -> serde_json::Value {
        let text = std::str::from_utf8(r.unsent()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len(), "{text}");
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn the_parsers_automatic_answers_get_a_json_body_naming_the_limit() {
        let r = Rewrite::answer_for(automatic("414 URI Too Long").as_bytes()).expect("a 414");
        assert!(r.unsent().starts_with(b"HTTP/1.1 414 URI Too Long\r\n"));
        let e = body_of(&r)["error"].as_str().unwrap().to_string();
        assert!(e.contains("65534") && e.contains("url_bytes_max"), "{e}");
        let r = Rewrite::answer_for(automatic("431 Request Header Fields Too Large").as_bytes())
            .expect("a 431");
        let e = body_of(&r)["error"].as_str().unwrap().to_string();
        assert!(
            e.contains("100 header fields") && e.contains("417792"),
            "{e}"
        );
        let r = Rewrite::answer_for(automatic("400 Bad Request").as_bytes()).expect("a 400");
        assert!(body_of(&r)["error"].as_str().unwrap().contains("malformed"));
    }

    #[test]
    fn handler_answers_are_never_touched() {
        let with_body = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\
                         connection: close\r\n\r\n{\"error\":1}";
        assert!(Rewrite::answer_for(with_body.as_bytes()).is_none());
        // Kept alive, or another status, or more than one head in the write: not the parser's answer.
        let kept = format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{DATE}\r\n");
        assert!(Rewrite::answer_for(kept.as_bytes()).is_none());
        assert!(Rewrite::answer_for(automatic("404 Not Found").as_bytes()).is_none());
        let two = automatic("400 Bad Request").repeat(2);
        assert!(Rewrite::answer_for(two.as_bytes()).is_none());
        assert!(Rewrite::answer_for(b"\xff\xfe").is_none());
    }

    #[test]
    fn a_rewrite_is_sent_in_parts() {
        let mut r = Rewrite::answer_for(automatic("414 URI Too Long").as_bytes()).unwrap();
        let all = r.unsent().len();
        assert!(!r.advance(10));
        assert_eq!(r.unsent().len(), all - 10);
        assert!(r.advance(all));
        assert!(r.unsent().is_empty());
    }
}

//! A cap on the request head, enforced on the bytes before hyper sees them.
//!
//! hyper answers a head over its own limits (buffer size, header count)
//! with a bare `431` and no body, which breaks the promise that every error
//! is `application/problem+json`. The guard trips below those limits and
//! answers itself: `431` for too many or too large header fields, `414` for
//! a request line that alone is over the cap. hyper never gets the bytes
//! that tripped it, so its own limit cannot fire first.

/// Largest request head (request line and header fields) accepted; below
/// hyper's read buffer limit (about 400 KiB), near what common proxies
/// allow (nginx: 32 KiB).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Header fields accepted in one request: hyper's own limit, which it
/// reports as a bare 431.
pub const MAX_HEADERS: usize = 100;

/// What the guard concluded from the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The head is still arriving and within the caps.
    Reading,
    /// The head is complete; the bytes after it are not the guard's.
    Done,
    /// Over a cap: answer with this and close.
    TooLarge(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 431: too many header fields, or too many bytes of them.
    HeadersTooLarge,
    /// 414: the request line alone is over the cap.
    UriTooLong,
}

/// Follows one request head line by line.
#[derive(Debug)]
pub(crate) struct HeadGuard {
    state: Verdict,
    bytes: usize,
    /// Complete non-empty lines (the request line, then header fields).
    lines: usize,
    /// Bytes in the current line, `\r` not counted.
    line_len: usize,
}

impl HeadGuard {
    pub(crate) fn new() -> Self {
        HeadGuard {
            state: Verdict::Reading,
            bytes: 0,
            lines: 0,
            line_len: 0,
        }
    }

    /// A new request head starts (the first byte after a response).
    pub(crate) fn restart(&mut self) {
        *self = HeadGuard::new();
    }

    /// No more heads to follow (the connection was upgraded).
    pub(crate) fn stop(&mut self) {
        self.state = Verdict::Done;
    }

    /// Feeds bytes just received.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Verdict {
        if self.state != Verdict::Reading {
            return self.state;
        }
        for &b in data {
            self.bytes += 1;
            match b {
                b'\n' if self.line_len == 0 && self.lines == 0 => {
                    // Blank lines before the request line are skipped by
                    // HTTP/1 parsers (RFC 9112 §2.2).
                }
                b'\n' if self.line_len == 0 => {
                    self.state = Verdict::Done;
                    return self.state;
                }
                b'\n' => {
                    self.lines += 1;
                    self.line_len = 0;
                    if self.lines > MAX_HEADERS + 1 {
                        self.state = Verdict::TooLarge(Rejection::HeadersTooLarge);
                        return self.state;
                    }
                }
                b'\r' => {}
                _ => self.line_len += 1,
            }
            if self.bytes > MAX_HEAD_BYTES {
                self.state = Verdict::TooLarge(if self.lines == 0 {
                    Rejection::UriTooLong
                } else {
                    Rejection::HeadersTooLarge
                });
                return self.state;
            }
        }
        self.state
    }
}

impl Rejection {
    /// The complete response: status line, headers, problem+json body.
    pub(crate) fn response(self) -> Vec<u8> {
        let (status, reason, slug, title, detail) = match self {
            Rejection::HeadersTooLarge => (
                431,
                "Request Header Fields Too Large",
                "headers-too-large",
                "Request header fields too large",
                format!(
                    "the request head is limited to {MAX_HEAD_BYTES} bytes and {MAX_HEADERS} header fields"
                ),
            ),
            Rejection::UriTooLong => (
                414,
                "URI Too Long",
                "uri-too-long",
                "URI too long",
                format!("the request line is limited to {MAX_HEAD_BYTES} bytes"),
            ),
        };
        let body = format!(
            r#"{{"type":"urn:convene:problem:{slug}","title":"{title}","status":{status},"detail":"{detail}"}}"#
        );
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(resp: &[u8]) -> (String, String) {
        let text = std::str::from_utf8(resp).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), body.to_string())
    }

    #[test]
    fn canned_responses_are_well_formed_problems() {
        for (r, status) in [
            (Rejection::HeadersTooLarge, 431),
            (Rejection::UriTooLong, 414),
        ] {
            let resp = r.response();
            let (head, body) = split(&resp);
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len(), "{head}");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["status"], status);
            assert!(v["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:convene:problem:"));
        }
    }

    #[test]
    fn a_head_within_the_caps_passes_in_any_split() {
        let mut head = String::from("\r\nGET /v1/x HTTP/1.1\r\nhost: a\r\n");
        for i in 0..(MAX_HEADERS - 1) {
            head.push_str(&format!("x-{i}: v\r\n"));
        }
        head.push_str("\r\nbody bytes that are not the head's\n\n");
        for chunk in [1, 7, head.len()] {
            let mut g = HeadGuard::new();
            let mut verdict = Verdict::Reading;
            for part in head.as_bytes().chunks(chunk) {
                verdict = g.feed(part);
            }
            assert_eq!(verdict, Verdict::Done, "chunk {chunk}");
        }
    }

    #[test]
    fn too_many_fields_too_many_bytes_or_a_long_uri_trip() {
        let mut g = HeadGuard::new();
        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            head.push_str(&format!("x-{i}: v\r\n"));
        }
        assert_eq!(
            g.feed(head.as_bytes()),
            Verdict::TooLarge(Rejection::HeadersTooLarge)
        );

        let mut g = HeadGuard::new();
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            g.feed(big.as_bytes()),
            Verdict::TooLarge(Rejection::HeadersTooLarge)
        );

        let mut g = HeadGuard::new();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            g.feed(long.as_bytes()),
            Verdict::TooLarge(Rejection::UriTooLong)
        );
        // Once tripped it stays tripped; a restart follows the next head.
        assert_eq!(
            g.feed(b"\r\n\r\n"),
            Verdict::TooLarge(Rejection::UriTooLong)
        );
        g.restart();
        assert_eq!(g.feed(b"GET / HTTP/1.1\r\n\r\n"), Verdict::Done);
    }
}

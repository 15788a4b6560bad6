//! Requests over a plain TCP connection: bytes sent exactly as given, for what an HTTP client
//! would refuse or rewrite, and answers read without trusting them to be well formed.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer, from either transport.
pub struct Answer {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What became of a request.
pub enum Outcome {
    Answer(Answer),
    /// No answer within the time allowed.
    Hang(Duration),
    /// The connection failed or closed without a complete answer.
    Closed(String),
}

/// Sends `request` on a new connection to `addr` and reads the answer, for at most `limit`.
/// The request is written while the answer is read: a server may answer before it has read
/// everything (a head too large), and a write that fails then is no failure of the exchange.
pub async fn exchange(addr: &str, request: &[u8], limit: Duration) -> Outcome {
    let start = Instant::now();
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let (mut reader, mut writer) = stream.into_split();
        let write = async {
            let _ = writer.write_all(request).await;
            // The write half stays open: a half-closed connection may end the request.
            std::future::pending::<()>().await
        };
        tokio::select! {
            answer = read_answer(&mut reader) => answer,
            () = write => Err("the write ended".to_owned()),
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Outcome::Hang(start.elapsed()),
        Ok(Err(message)) => Outcome::Closed(message),
        Ok(Ok(mut answer)) => {
            answer.elapsed = start.elapsed();
            Outcome::Answer(answer)
        }
    }
}

async fn read_answer(reader: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Answer, String> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(answer) = parse(&buf, false) {
            return Ok(answer);
        }
        let read = reader.read(&mut chunk).await;
        match read {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                return parse(&buf, true).ok_or_else(|| match read {
                    Err(e) if buf.is_empty() => format!("reading: {e}"),
                    Err(e) => format!("reading, after {} bytes of an answer: {e}", buf.len()),
                    Ok(_) if buf.is_empty() => "closed without an answer".to_owned(),
                    Ok(_) => format!("closed after {} bytes of an incomplete answer", buf.len()),
                })
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The answer in `buf` if it is complete, or at the end of the stream if its head is.
fn parse(buf: &[u8], at_end: bool) -> Option<Answer> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let rest = &buf[end + 4..];
    if (100..200).contains(&status) {
        // An interim answer: the final one follows.
        return parse(rest, at_end);
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(rest) {
            Some(body) => body,
            None if at_end => rest.to_vec(),
            None => return None,
        }
    } else if let Some(length) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() >= length {
            rest[..length].to_vec()
        } else if at_end {
            rest.to_vec()
        } else {
            return None;
        }
    } else if at_end || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Answer {
        status,
        headers,
        body,
        elapsed: Duration::ZERO,
    })
}

/// The body of a complete chunked encoding.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = vec![];
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return find(rest, b"\r\n").map(|_| body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

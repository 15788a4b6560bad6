//! One kept HTTP/1.1 connection with TCP_NODELAY, requests written and answers read by hand,
//! shared by the benchmark examples: a client library can cost more than the request it times.

use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// One kept HTTP/1.1 connection, requests written and answers read by hand.
pub struct Conn {
    host: String,
    pub path: String,
    pub token: Option<String>,
    /// Header lines sent with every request (each ending in CRLF).
    pub extra: String,
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(base: &str, token: Option<String>) -> anyhow::Result<Conn> {
        let rest = base
            .strip_prefix("http://")
            .context("the base URL must start with http://")?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let stream = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            host: host.to_owned(),
            path: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
            token,
            extra: String::new(),
            stream: BufReader::with_capacity(1 << 16, stream),
        })
    }

    /// Sends `METHOD base/rel` and returns the status and the body.
    pub fn send(
        &mut self,
        method: &str,
        rel: &str,
        body: Option<&[u8]>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let slash = if rel.is_empty() { "" } else { "/" };
        let mut head = format!(
            "{method} {}{slash}{rel} HTTP/1.1\r\nHost: {}\r\nAccept: application/fhir+json\r\n",
            self.path, self.host
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str(&self.extra);
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        match body {
            Some(b) => s.write_all(&[head.as_bytes(), b].concat())?,
            None => s.write_all(head.as_bytes())?,
        }
        self.answer()
    }

    fn answer(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP answer: {line:?}"))?;
        let (mut length, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if !chunked {
            body.resize(length, 0);
            self.stream.read_exact(&mut body)?;
            return Ok((status, body));
        }
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)?;
            let start = body.len();
            body.resize(start + size, 0);
            self.stream.read_exact(&mut body[start..])?;
            line.clear();
            self.stream.read_line(&mut line)?;
            if size == 0 {
                return Ok((status, body));
            }
        }
    }

    pub fn json(&mut self, rel: &str) -> anyhow::Result<Value> {
        let (status, body) = self.send("GET", rel, None)?;
        if status != 200 {
            bail!(
                "GET {rel}: {status} {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

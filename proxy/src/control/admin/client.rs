//! The CLI's side of the admin socket: one request, one typed answer.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::api::{Request, Response};

/// Sends `request` to the daemon at `socket`; a [`Response::Error`] becomes an error.
pub fn request(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the daemon at {} (is `proxy run` running? is admin.socket the same? pass --socket)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(serde_json::to_string(request)?.as_bytes())?;
    stream.write_all(b"\n")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    let response: Response = serde_json::from_str(&line).with_context(|| {
        format!(
            "the daemon's answer is not a response this proxy understands (is the daemon another version?): {:?}",
            line.trim_end()
        )
    })?;
    if let Response::Error(error) = response {
        anyhow::bail!("{error}");
    }
    Ok(response)
}

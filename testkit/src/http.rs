//! Plain HTTP/1.1 for tests and benchmarks: one request per connection, answers read to the
//! end, chunked bodies decoded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends one request to `address` and returns the status and the body. `headers` are sent
/// as given; a `Host` among them replaces the default one (the address itself). Panics when
/// the server cannot be reached, as a test wants.
pub fn call(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect {address}: {error}"));
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {address}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).expect("the request is sent");
    stream.write_all(body.as_bytes()).expect("the body is sent");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("the answer is read");
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let payload = if is_chunked(head) { dechunk(payload) } else { payload.to_string() };
    (status, payload)
}

/// Whether a response head says its body comes in chunks.
pub fn is_chunked(head: &str) -> bool {
    head.to_ascii_lowercase().contains("transfer-encoding: chunked")
}

/// The body of a chunked response.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

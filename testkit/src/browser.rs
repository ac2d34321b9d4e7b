//! A real headless Chromium, driven through `chromedriver` (WebDriver), for the UI's tests
//! and benchmarks. Debian's `chromium` and `chromium-driver` are installed on first use when
//! missing (as root, with apt-get); without them `Browser::start` says how to get them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{dechunk, is_chunked};

/// Where WebDriver keeps an element's id in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("port", &self.port).field("session", &self.session).finish()
    }
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs Debian's chromium and chromium-driver if either is missing.
pub fn ensure_chromium() -> Result<(), String> {
    if on_path("chromium") && on_path("chromedriver") {
        return Ok(());
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout == b"0\n");
    if !root || !on_path("apt-get") {
        return Err("the UI tests need Debian's chromium and chromium-driver: apt-get install chromium chromium-driver".to_string());
    }
    let status = Command::new("sh")
        // Test binaries run at once, and apt-get refuses a second install while one holds
        // its lock: one installs, the others wait for it and find it done.
        .args(["-c", "flock /tmp/drover-testkit-apt.lock sh -c 'command -v chromium >/dev/null && command -v chromedriver >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }'"])
        .status()
        .map_err(|error| format!("cannot run apt-get: {error}"))?;
    if !status.success() || !on_path("chromedriver") {
        return Err("apt-get could not install chromium and chromium-driver".to_string());
    }
    Ok(())
}

/// One HTTP/1.1 call to chromedriver; the JSON answer's `value`.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(|error| error.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|error| error.to_string())?;
    let (head, body) = read_response(&mut stream)?;
    let value: Value = serde_json::from_str(&body)
        .map_err(|error| format!("chromedriver answered {head}: {error}: {body}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{method} {path}: {}", value["value"]));
    }
    Ok(value["value"].clone())
}

/// Reads one response: its head, then a body of the length it gives, or its chunks
/// (chromedriver may keep the connection open, so reading to the end would wait).
fn read_response(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let lower = head.to_ascii_lowercase();
            let length = lower
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok());
            let chunked = is_chunked(&head);
            let body_start = end + 4;
            let complete = match length {
                Some(length) => data.len() >= body_start + length,
                None if chunked => data[body_start..].windows(5).any(|w| w == b"0\r\n\r\n"),
                None => false,
            };
            if complete {
                let body = match length {
                    Some(length) => {
                        String::from_utf8_lossy(&data[body_start..body_start + length]).into_owned()
                    }
                    None => dechunk(&String::from_utf8_lossy(&data[body_start..])),
                };
                return Ok((head, body));
            }
        }
        // A socket with a read timeout is not restarted after a signal, even under
        // SA_RESTART (signal(7)); the test process has handlers (a child's exit), so read on.
        let read = match stream.read(&mut buffer) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error.to_string()),
        };
        if read == 0 {
            let text = String::from_utf8_lossy(&data).into_owned();
            let (head, body) =
                text.split_once("\r\n\r\n").ok_or("a malformed answer from chromedriver")?;
            return Ok((head.to_string(), body.to_string()));
        }
        data.extend_from_slice(&buffer[..read]);
    }
}

impl Browser {
    /// A fresh headless Chromium at `width`×`height`, with a fresh profile.
    pub fn start(width: u32, height: u32) -> Result<Browser, String> {
        ensure_chromium()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| error.to_string())?
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start chromedriver: {error}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while call(port, "GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                return Err("chromedriver did not answer within 20 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}"), "--hide-scrollbars"],
        } } } });
        let mut browser = Browser { driver, port, session: String::new() };
        let session = call(port, "POST", "/session", Some(&capabilities))?;
        browser.session = session["sessionId"].as_str().ok_or("no session id")?.to_string();
        Ok(browser)
    }

    fn session_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        call(self.port, method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for its load event.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session_call("POST", "/url", Some(&json!({ "url": url }))).map(drop)
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Result<Value, String> {
        self.session_call("POST", "/execute/sync", Some(&json!({ "script": script, "args": [] })))
    }

    /// Polls `script` until it returns something truthy, and returns that. A script that
    /// throws (the page is not there yet) counts as not yet.
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = match self.eval(script) {
                Ok(value) => value,
                Err(error) if error.contains("javascript error") => {
                    if Instant::now() > deadline {
                        return Err(format!("waited {timeout:?} for {what}: {error}"));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("waited {timeout:?} for {what}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn element(&self, css: &str) -> Result<String, String> {
        let found = self.session_call(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        found[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element matches {css}"))
    }

    /// Clicks the first element matching `css`, as a user would.
    pub fn click(&self, css: &str) -> Result<(), String> {
        let element = self.element(css)?;
        self.session_call("POST", &format!("/element/{element}/click"), Some(&json!({}))).map(drop)
    }

    /// Types `text` into the element matching `css` (`\u{E007}` is Enter).
    pub fn type_into(&self, css: &str, text: &str) -> Result<(), String> {
        let element = self.element(css)?;
        self.session_call("POST", &format!("/element/{element}/clear"), Some(&json!({})))?;
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    /// Saves the visible page as a PNG.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        use base64::Engine;
        let data = self.session_call("GET", "/screenshot", None)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().ok_or("no screenshot data")?)
            .map_err(|error| error.to_string())?;
        std::fs::write(path, bytes).map_err(|error| error.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = call(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

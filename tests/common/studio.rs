//! Running `dfl studio` and a headless Chromium for the studio's tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// A `dfl studio` child process on a random port.
pub struct Studio {
    child: Child,
    /// Kept open: the studio may print more.
    _stdout: BufReader<std::process::ChildStdout>,
    /// The URL it printed (with the token).
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The session token.
    pub token: String,
}

impl Studio {
    /// Starts `dfl -w WS studio --port 0` and reads the URL it prints.
    pub fn start(ws: &Path) -> Self {
        let mut child = super::dfl_cmd(ws, &["studio", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dfl studio starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| {
            panic!("dfl studio printed no URL: {line:?}");
        });
        let (base, token) = url.split_once("/?token=").expect("a URL with a token");
        let (url, base, token) = (url.to_owned(), base.to_owned(), token.to_owned());
        Self { child, _stdout: stdout, url, base, token }
    }
}

impl Studio {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 request (no client library between the test and what the server sees):
/// returns the status code, the headers (lower-case names) and the body.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !has_host {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a full answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// chromedriver and a headless Chromium session on it.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
    /// The runtime the client's futures run on.
    pub rt: tokio::runtime::Runtime,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    ///
    /// # Panics
    /// When chromedriver or Chromium is missing: `scripts/setup.sh` installs them.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver cannot start ({e}); scripts/setup.sh installs chromium-driver")
            });
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1000"] }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt
            .block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .expect("a headless Chromium session (scripts/setup.sh installs chromium)");
        Self { driver, client, rt }
    }

    /// Runs one WebDriver future.
    pub fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }

    /// Evaluates `script` (a function body; `return` its value) in the page.
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.run(self.client.execute(script, vec![])).unwrap()
    }

    /// Waits up to `secs` for `script` to return a truthy value.
    pub fn wait_until(&self, secs: u64, what: &str, script: &str) {
        let started = Instant::now();
        loop {
            let value = self.eval(script);
            let truthy = match &value {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::Null => false,
                serde_json::Value::Number(n) => n.as_f64() != Some(0.0),
                serde_json::Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Saves a screenshot of the page as PNG.
    pub fn screenshot(&self, path: &Path) {
        let png = self.run(self.client.screenshot()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(client.close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the tests leave their screenshots for a person to look at.
pub fn screenshot_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("studio-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child process killed when the test ends, passed or not.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

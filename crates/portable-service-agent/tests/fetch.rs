//! fetch::get and fetch::download against a loopback HTTP server that answers canned
//! responses: honest ones, lying ones, and one that never answers.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_service_agent::fetch::{self, Limits};
use sha2::{Digest, Sha256};

/// What the server answers to a path.
enum Reply {
    /// These bytes, status line and headers included; then it closes the connection.
    Raw(Vec<u8>),
    /// Nothing, holding the connection open until the client goes or the server stops.
    Hang,
}

/// A loopback server on a port of its own, in a thread stopped when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: fn(&str) -> Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = stop.clone();
            let requests = requests.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => answer(stream, routes, &stop, &requests),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        Server {
            port,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    mut stream: TcpStream,
    routes: fn(&str) -> Reply,
    stop: &AtomicBool,
    requests: &Mutex<Vec<String>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return,
            // a TLS handshake: answered in plain HTTP, as a server without TLS would
            Ok(_) if head.is_empty() && buf[0] == 0x16 => {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
                return;
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    requests.lock().unwrap().push(head);
    match routes(&path) {
        // the client may hang up early (a body too big): not the server's failure
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Reply::Hang => loop {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        },
    }
}

fn response(head: &str, body: &[u8]) -> Reply {
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

const FEED: &[u8] = b"0123456789abcdef *app_2.raw\n";

fn big() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(10_000) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn routes(path: &str) -> Reply {
    match path {
        "/SHA256SUMS" => response(
            &format!("HTTP/1.1 200 OK\nContent-Length: {}\nConnection: close\n", FEED.len()),
            FEED,
        ),
        "/missing" => response(
            "HTTP/1.1 404 Not Found\nContent-Length: 9\nConnection: close\n",
            b"not here\n",
        ),
        "/big" => {
            let body = big();
            response(
                &format!("HTTP/1.1 200 OK\nContent-Length: {}\nConnection: close\n", body.len()),
                &body,
            )
        }
        "/big-chunked" => response(
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nConnection: close\n",
            &chunked(&big()),
        ),
        "/big-close" => response("HTTP/1.1 200 OK\nConnection: close\n", &big()),
        // says 5 bytes, sends far more: only 5 are read
        "/lies-short" => response(
            "HTTP/1.1 200 OK\nContent-Length: 5\nConnection: close\n",
            &big(),
        ),
        // says more than it sends, then hangs up
        "/lies-long" => response(
            "HTTP/1.1 200 OK\nContent-Length: 1000\nConnection: close\n",
            b"only this",
        ),
        "/hang" => Reply::Hang,
        "/to-feed" => response(
            "HTTP/1.1 302 Found\nLocation: /SHA256SUMS\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
        "/to-missing" => response(
            "HTTP/1.1 301 Moved Permanently\nLocation: missing\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
        "/to-ftp" => response(
            "HTTP/1.1 302 Found\nLocation: ftp://127.0.0.1/SHA256SUMS\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
        "/to-file" => response(
            "HTTP/1.1 302 Found\nLocation: file:///etc/passwd\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
        "/loop" => response(
            "HTTP/1.1 302 Found\nLocation: /loop\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
        _ => response(
            "HTTP/1.1 500 Internal Server Error\nContent-Length: 0\nConnection: close\n",
            b"",
        ),
    }
}

fn limits() -> Limits {
    Limits {
        connect: Duration::from_secs(5),
        total: Duration::from_secs(20),
    }
}

fn get(url: &str, max: u64) -> Result<Vec<u8>, String> {
    fetch::get(url, max, &limits()).map_err(|e| format!("{e:#}"))
}

#[test]
fn get_fetches_a_body_and_says_who_asks() {
    let server = Server::start(routes);
    assert_eq!(get(&server.url("/SHA256SUMS"), 1024).unwrap(), FEED);
    // exactly max bytes is not too many
    assert_eq!(
        get(&server.url("/SHA256SUMS"), FEED.len() as u64).unwrap(),
        FEED
    );
    let requests = server.requests.lock().unwrap();
    let head = requests[0].to_ascii_lowercase();
    assert!(head.starts_with("get /sha256sums http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!(
            "\r\nuser-agent: portable-service-agent/{}\r\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{head}"
    );
}

#[test]
fn a_status_other_than_2xx_is_named() {
    let server = Server::start(routes);
    let url = server.url("/missing");
    assert_eq!(
        get(&url, 1024).unwrap_err(),
        format!("{url}: the server answered 404 Not Found")
    );
    let url = server.url("/whatever");
    assert_eq!(
        get(&url, 1024).unwrap_err(),
        format!("{url}: the server answered 500 Internal Server Error")
    );
}

#[test]
fn a_body_over_max_is_refused_whatever_the_server_says() {
    let server = Server::start(routes);
    for path in ["/big", "/big-chunked", "/big-close"] {
        let url = server.url(path);
        assert_eq!(
            get(&url, 1000).unwrap_err(),
            format!("{url}: more than 1000 bytes"),
            "{path}"
        );
        // and the whole of it when it fits
        assert_eq!(get(&url, 300_000).unwrap(), big(), "{path}");
        assert_eq!(
            get(&url, 299_999).unwrap_err(),
            format!("{url}: more than 299999 bytes"),
            "{path}"
        );
    }
}

#[test]
fn a_lying_content_length_bounds_what_is_read() {
    let server = Server::start(routes);
    // no more than announced is read, whatever follows
    assert_eq!(get(&server.url("/lies-short"), 1000).unwrap(), big()[..5]);
    // an answer cut short is an error, not a short file
    let url = server.url("/lies-long");
    let err = get(&url, 10_000).unwrap_err();
    assert!(err.starts_with(&format!("{url}: ")), "{err}");
    assert!(err.contains("closed the connection early"), "{err}");
}

#[test]
fn a_server_that_never_answers_times_out_within_the_limit() {
    let server = Server::start(routes);
    let url = server.url("/hang");
    let limits = Limits {
        connect: Duration::from_secs(1),
        total: Duration::from_secs(2),
    };
    let start = Instant::now();
    let err = format!("{:#}", fetch::get(&url, 1024, &limits).unwrap_err());
    let elapsed = start.elapsed();
    assert_eq!(
        err,
        format!("{url}: timed out: no complete answer within 2.0 s")
    );
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );

    let to = tempfile::tempdir().unwrap();
    let file = to.path().join("image.raw");
    let start = Instant::now();
    let err = format!(
        "{:#}",
        fetch::download(&url, &file, 1024, &limits).unwrap_err()
    );
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(err.contains("timed out"), "{err}");
    assert!(!file.exists(), "the partial file is removed");
}

#[test]
fn redirects_are_followed_to_http_only() {
    let server = Server::start(routes);
    assert_eq!(get(&server.url("/to-feed"), 1024).unwrap(), FEED);
    for (path, to) in [
        ("/to-ftp", "ftp://127.0.0.1/SHA256SUMS"),
        ("/to-file", "file:///etc/passwd"),
    ] {
        let url = server.url(path);
        let scheme = to.split(':').next().unwrap();
        assert_eq!(
            get(&url, 1024).unwrap_err(),
            format!(
                "{url}: redirected to {to}: {scheme}: URLs are not supported, only http:// and https://"
            )
        );
    }
    let url = server.url("/to-missing");
    assert_eq!(
        get(&url, 1024).unwrap_err(),
        format!(
            "{url} (redirected to {}): the server answered 404 Not Found",
            server.url("/missing")
        )
    );
    let url = server.url("/loop");
    assert_eq!(
        get(&url, 1024).unwrap_err(),
        format!("{url}: more than {} redirects", fetch::MAX_REDIRECTS)
    );
}

#[test]
fn only_http_and_https_urls() {
    for url in ["file:///etc/passwd", "ftp://127.0.0.1/SHA256SUMS"] {
        let scheme = url.split(':').next().unwrap();
        assert_eq!(
            get(url, 1024).unwrap_err(),
            format!("{url}: {scheme}:// URLs are not supported, only http:// and https://")
        );
    }
    assert_eq!(
        get("/etc/passwd", 1024).unwrap_err(),
        "/etc/passwd: not a URL (http:// or https://)"
    );
}

#[test]
fn a_refused_connection_is_named() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/SHA256SUMS");
    assert_eq!(
        get(&url, 1024).unwrap_err(),
        format!("{url}: connection refused")
    );
}

#[test]
fn https_to_a_server_that_speaks_no_tls_fails_in_tls() {
    let server = Server::start(routes);
    let url = format!("https://127.0.0.1:{}/SHA256SUMS", server.port);
    let err = get(&url, 1024).unwrap_err();
    assert!(err.starts_with(&format!("{url}: TLS failed: ")), "{err}");
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[test]
fn download_writes_a_new_file_and_returns_its_sha256() {
    let server = Server::start(routes);
    let dir = tempfile::tempdir().unwrap();
    for path in ["/big", "/big-chunked", "/big-close", "/SHA256SUMS"] {
        let to = dir.path().join(format!("{}.part", &path[1..]));
        let hash = fetch::download(&server.url(path), &to, 1 << 20, &limits()).unwrap();
        let written = std::fs::read(&to).unwrap();
        let expected = if path == "/SHA256SUMS" {
            FEED.to_vec()
        } else {
            big()
        };
        assert_eq!(written, expected, "{path}");
        assert_eq!(hash, sha256(&expected), "{path}");
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{path}");
    }
}

#[test]
fn a_failed_download_leaves_no_file() {
    let server = Server::start(routes);
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("image.raw.part");
    for (path, max) in [
        ("/missing", 1 << 20),
        ("/big", 1000),
        ("/big-chunked", 1000),
        ("/big-close", 299_999),
        ("/lies-long", 1 << 20),
        ("/to-ftp", 1 << 20),
    ] {
        let url = server.url(path);
        let err = format!(
            "{:#}",
            fetch::download(&url, &to, max, &limits()).unwrap_err()
        );
        assert!(err.starts_with(&format!("{url}: ")), "{err}");
        assert!(!to.exists(), "{path}: the partial file is removed");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn download_refuses_a_file_or_symlink_already_there() {
    let server = Server::start(routes);
    let url = server.url("/SHA256SUMS");
    let dir = tempfile::tempdir().unwrap();
    let refused = |to: &Path| {
        let err = format!(
            "{:#}",
            fetch::download(&url, to, 1 << 20, &limits()).unwrap_err()
        );
        assert_eq!(
            err,
            format!(
                "{}: already exists, refusing to download {url} over it",
                to.display()
            )
        );
    };

    let existing = dir.path().join("existing");
    std::fs::write(&existing, b"keep me").unwrap();
    refused(&existing);
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let target = dir.path().join("target");
    std::fs::write(&target, b"keep me too").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    refused(&link);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me too");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    let nowhere = dir.path().join("nowhere");
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
    refused(&dangling);
    assert!(!nowhere.exists(), "no file made through the symlink");
    assert!(std::fs::symlink_metadata(&dangling).is_ok());

    // nothing was asked of the server
    assert!(server.requests.lock().unwrap().is_empty());
}

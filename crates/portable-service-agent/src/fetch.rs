//! The feed over HTTP(S), as the real host's [`crate::host::Host::get`] and
//! [`crate::host::Host::download`] fetch it: one request at a time, each bounded in time
//! ([`Limits`]) and in size (the caller's `max`, counted while reading, whatever the server
//! announced), errors in plain words that name the URL.
//!
//! It owns the HTTP client (ureq with rustls and ring: no OpenSSL, so the binary links
//! statically), its trusted roots, its redirects and its User-Agent; the file a download
//! creates until it is complete (removed after any failure); nothing else. The caller syncs,
//! renames and sets the mode of what [`download`] wrote.
//!
//! Trusted roots: the system's CA bundle, as systemd-pull (libcurl) trusts it, when one of
//! [`CA_BUNDLES`] exists and holds a certificate; else the Mozilla roots compiled in
//! (webpki-roots). Never both: ureq takes one set. A proxy named in the environment
//! (`https_proxy`, `http_proxy`, `ALL_PROXY`, `NO_PROXY`) is used, as curl would.
//!
//! Only `http://` and `https://` URLs, also after a redirect: redirects are followed here, not
//! by ureq (which would take `file:///x` for a relative path), at most [`MAX_REDIRECTS`], all
//! within the one [`Limits::total`]. An `https://` URL may redirect to `http://`, as curl lets
//! systemd-pull: what the agent fetches is verified by its signature, not by its transport.
//! `file://` is refused.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use ureq::tls::{PemItem, RootCerts, TlsConfig};
use ureq::Agent;

/// How long a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// To resolve the host's name, and then to connect to it, TLS handshake included.
    pub connect: Duration,
    /// The whole request, from the name lookup to the body's last byte, redirects included.
    pub total: Duration,
}

impl Default for Limits {
    /// 10 s to connect; 10 minutes in all, enough for a 1 GiB image at 2 MB/s. A transfer that
    /// stalls fails sooner: no byte for [`STALL`] ends it.
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(600),
        }
    }
}

/// A request with no byte read from the server for that long fails (capped by
/// [`Limits::total`]).
pub const STALL: Duration = Duration::from_secs(60);

/// Redirects followed before a request fails.
pub const MAX_REDIRECTS: u32 = 5;

/// The system's CA bundles, by distribution: Debian, Ubuntu, Arch; Fedora, RHEL; openSUSE.
/// The first that exists and holds a certificate is trusted.
pub const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Read at most this much of a bundle (a full one is about 200 KiB).
const MAX_CA_BUNDLE: u64 = 16 << 20;

/// The buffer a download streams through.
const BUFFER: usize = 64 << 10;

/// A small file of the feed, at most `max` bytes.
pub fn get(url: &str, max: u64, limits: &Limits) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    fetch(url, max, limits, |chunk| {
        body.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(body)
}

/// A file of the feed streamed into `to`, which must not exist (a symlink there is refused, not
/// followed): created with mode 0600, at most `max` bytes, not synced; its SHA-256. After any
/// failure, the part written is removed.
pub fn download(url: &str, to: &Path, max: u64, limits: &Limits) -> Result<[u8; 32]> {
    check_scheme(url)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                anyhow!(
                    "{}: already exists, refusing to download {url} over it",
                    to.display()
                )
            }
            _ => anyhow!("{}: cannot create it: {e}", to.display()),
        })?;
    let mut partial = Partial {
        path: to,
        file: Some(file),
    };
    let mut hash = Sha256::new();
    fetch(url, max, limits, |chunk| {
        hash.update(chunk);
        partial
            .file
            .as_mut()
            .expect("open until done")
            .write_all(chunk)
            .map_err(|e| anyhow!("{}: cannot write it: {e}", to.display()))
    })?;
    partial.done();
    Ok(hash.finalize().into())
}

/// The file a download is writing: removed when dropped before [`Partial::done`].
struct Partial<'a> {
    path: &'a Path,
    file: Option<File>,
}

impl Partial<'_> {
    fn done(mut self) {
        self.file = None;
        std::mem::forget(self);
    }
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(self.path);
    }
}

/// Where a redirect from `from` to `location` (absolute, or relative to `from`) leads: an
/// `http://` or `https://` URL.
fn redirect(from: &str, location: &str) -> std::result::Result<String, String> {
    let location = location.trim();
    // RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'
    if let Some((scheme, _)) = location.split_once(':') {
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if is_scheme {
            return if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
                Ok(location.to_string())
            } else {
                Err(format!(
                    "{scheme}: URLs are not supported, only http:// and https://"
                ))
            };
        }
    }
    // `from` was checked: SCHEME://AUTHORITY[/PATH][?QUERY]
    let (scheme, rest) = from.split_once("://").ok_or("not a URL")?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    Ok(if location.starts_with("//") {
        format!("{scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let dir = path.rfind('/').map_or("/", |end| &path[..=end]);
        format!("{scheme}://{authority}{dir}{location}")
    })
}

/// Refuses what isn't `http://` or `https://` before anything is sent.
fn check_scheme(url: &str) -> Result<()> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => Ok(()),
        Some(s) => Err(anyhow!(
            "{url}: {s}:// URLs are not supported, only http:// and https://"
        )),
        None => Err(anyhow!("{url}: not a URL (http:// or https://)")),
    }
}

/// GETs `url` and hands its body to `sink` chunk by chunk, failing once more than `max` bytes
/// came.
fn fetch(
    url: &str,
    max: u64,
    limits: &Limits,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    check_scheme(url)?;
    // The URL asked for, and where it was redirected, for the errors.
    let mut current = url.to_string();
    let name = |current: &str| {
        if current == url {
            url.to_string()
        } else {
            format!("{url} (redirected to {current})")
        }
    };
    let deadline = Instant::now() + limits.total;
    let mut redirects = 0;
    let mut response = loop {
        let timed_out = || {
            anyhow!(
                "{}: {}",
                name(&current),
                describe(&ureq::Error::Timeout(ureq::Timeout::Global), limits)
            )
        };
        let remaining = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        let response = agent()
            .get(&current)
            .config()
            .timeout_global(Some(remaining))
            .timeout_resolve(Some(limits.connect.min(remaining)))
            .timeout_connect(Some(limits.connect.min(remaining)))
            .build()
            .call()
            .map_err(|e| match e {
                // the budget of a request after a redirect is what was left of the first's
                ureq::Error::Timeout(ureq::Timeout::Global) => timed_out(),
                e => anyhow!("{}: {}", name(&current), describe(&e, limits)),
            })?;
        let location = response.headers().get(ureq::http::header::LOCATION);
        match location {
            Some(location) if response.status().is_redirection() => {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    bail!("{url}: more than {MAX_REDIRECTS} redirects");
                }
                let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
                current = redirect(&current, &location).map_err(|why| {
                    anyhow!("{}: redirected to {location}: {why}", name(&current))
                })?;
            }
            _ => break response,
        }
    };
    let url = name(&current);
    let url = url.as_str();
    let status = response.status();
    if !status.is_success() {
        return Err(match status.canonical_reason() {
            Some(reason) => anyhow!("{url}: the server answered {} {reason}", status.as_u16()),
            None => anyhow!("{url}: the server answered {}", status.as_u16()),
        });
    }
    let too_big = || anyhow!("{url}: more than {max} bytes");
    // Refused before reading when the server says so; but counted below whatever it says.
    if response
        .body()
        .content_length()
        .is_some_and(|len| len > max)
    {
        return Err(too_big());
    }
    let mut reader = response.body_mut().as_reader();
    let mut buffer = vec![0u8; BUFFER];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = ureq::Error::from(e);
                return Err(anyhow!(
                    "{url}: reading the body after {total} bytes: {}",
                    describe(&e, limits)
                ));
            }
        };
        total += n as u64;
        if total > max {
            return Err(too_big());
        }
        sink(&buffer[..n])?;
    }
}

/// The client, made once: its roots, redirects, User-Agent and stall limit. Each request sets
/// its own [`Limits`].
fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = TlsConfig::builder()
            .root_certs(system_roots().unwrap_or(RootCerts::WebPki))
            .build();
        Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            // followed by `fetch`, which sees where each leads
            .max_redirects(0)
            .user_agent(concat!(
                "portable-service-agent/",
                env!("CARGO_PKG_VERSION")
            ))
            // the bytes counted against `max` are the bytes of the file, as the list hashed them
            .accept_encoding("identity")
            .timeout_per_read(Some(STALL))
            .build()
            .new_agent()
    })
}

/// The certificates of the first of [`CA_BUNDLES`] that holds any.
fn system_roots() -> Option<RootCerts> {
    CA_BUNDLES.iter().find_map(|path| {
        let mut pem = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_CA_BUNDLE).read_to_end(&mut pem))
            .ok()?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        (!certs.is_empty()).then(|| RootCerts::new_with_certs(&certs))
    })
}

/// What failed, in plain words.
fn describe(e: &ureq::Error, limits: &Limits) -> String {
    use ureq::Error as E;
    use ureq::Timeout as T;
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    match e {
        E::Timeout(T::Resolve) => format!(
            "the host's name was not resolved within {}",
            secs(limits.connect)
        ),
        E::Timeout(T::Connect) => format!(
            "no connection (TCP and TLS) within {}",
            secs(limits.connect)
        ),
        E::Timeout(T::Global | T::PerCall) => format!(
            "timed out: no complete answer within {}",
            secs(limits.total)
        ),
        E::Timeout(T::PerRead) => format!("timed out: nothing came for {}", secs(STALL)),
        E::Timeout(t) => format!("timed out ({t})"),
        E::HostNotFound => "host not found (DNS)".to_string(),
        E::Io(io) => match io.kind() {
            _ if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                format!("TLS failed: {io}")
            }
            // std's words for a getaddrinfo failure (ureq's resolver passes them on)
            _ if io
                .to_string()
                .starts_with("failed to lookup address information") =>
            {
                format!("host not found (DNS): {io}")
            }
            io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            io::ErrorKind::ConnectionReset => "connection reset by the server".to_string(),
            io::ErrorKind::UnexpectedEof => "the server closed the connection early".to_string(),
            io::ErrorKind::TimedOut => "timed out".to_string(),
            _ => format!("network error: {io}"),
        },
        E::Tls(what) => format!("TLS failed: {what}"),
        E::Rustls(what) => format!("TLS failed: {what}"),
        E::Pem(_) => "TLS failed: a certificate could not be read".to_string(),
        E::BadUri(what) => format!("bad URL: {what}"),
        E::Http(what) => format!("bad URL or request: {what}"),
        E::Protocol(what) => format!("not a valid HTTP answer: {what}"),
        E::LargeResponseHeader(..) => "the answer's header is too big".to_string(),
        E::ConnectionFailed => "connection failed".to_string(),
        E::ConnectProxyFailed(what) => format!("the proxy refused: {what}"),
        E::InvalidProxyUrl => "the proxy named in the environment is not a valid URL".to_string(),
        other => other.to_string(),
    }
}

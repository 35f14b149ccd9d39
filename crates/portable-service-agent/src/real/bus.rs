//! The system bus, for portabled and systemd: a connection per time limit (zbus bounds every
//! method call of a connection by one limit), made on first use and made again after a broken
//! one. Every call answers within its limit, and every error names the call and its subject.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zbus::blocking::{connection, Connection};
use zbus::zvariant::{DynamicType, Type};

/// A method of a D-Bus object, and what it is called for (a unit, an image), for errors.
pub struct Method<'a> {
    pub destination: &'static str,
    pub path: &'a str,
    pub interface: &'static str,
    pub name: &'static str,
    pub subject: &'a str,
    pub limit: Duration,
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.name, self.subject)
    }
}

/// A failed call: the D-Bus error's name when the service answered with one.
#[derive(Debug)]
pub struct CallError {
    pub name: Option<String>,
    text: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CallError {}

/// The D-Bus error name of a failed call, if the service answered with an error.
pub fn error_name(error: &anyhow::Error) -> Option<&str> {
    error.downcast_ref::<CallError>()?.name.as_deref()
}

pub const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

#[derive(Default)]
pub struct Bus {
    connections: BTreeMap<Duration, Connection>,
    /// The calls [`Bus::call_once`] made, by the limit of their connection: (name, subject).
    once: BTreeSet<(Duration, &'static str, String)>,
}

impl Bus {
    /// Calls `method` with `body` (its arguments, a tuple), the reply read as `R`.
    pub fn call<B, R>(&mut self, method: &Method, body: &B) -> anyhow::Result<R>
    where
        B: Serialize + DynamicType,
        R: DeserializeOwned + Type,
    {
        let connection = self
            .connection(method.limit)
            .map_err(|e| anyhow!("{method}: {e:#}"))?;
        let reply = connection.call_method(
            Some(method.destination),
            method.path,
            Some(method.interface),
            method.name,
            body,
        );
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => return Err(self.failed(method, error).into()),
        };
        let body = reply.body();
        body.deserialize::<R>().map_err(|e| {
            anyhow!(
                "{method}: unexpected reply (signature {}, expected {}): {e}",
                body.signature(),
                R::SIGNATURE
            )
        })
    }

    /// Calls `method` unless this connection made the same call already: for calls whose
    /// effect lasts while the connection does (`RefUnit`). systemd before 251 counts a second
    /// reference of one unit by one client on the wrong counter (sd-bus' recursive name
    /// tracking; systemd's commit b21f237d99 mended it), and when that client leaves PID 1
    /// spins at a whole CPU and runs no job again, not even a start: measured in VMs on 239,
    /// 245, 247 and 249, after an update that started a version's unit, found it failing and
    /// started the version before's unit of the same name.
    pub fn call_once<B>(&mut self, method: &Method, body: &B) -> anyhow::Result<()>
    where
        B: Serialize + DynamicType,
    {
        // taken as made before it is: a call with no answer in time may still be done by
        // systemd (a broken connection forgets it, with the connection)
        if !self
            .once
            .insert((method.limit, method.name, method.subject.to_owned()))
        {
            return Ok(());
        }
        self.call::<B, ()>(method, body)
    }

    fn failed(&mut self, method: &Method, error: zbus::Error) -> CallError {
        match error {
            zbus::Error::MethodError(name, detail, _) => CallError {
                text: format!(
                    "{method}: {}: {}",
                    name.as_str(),
                    detail.unwrap_or_default()
                ),
                name: Some(name.as_str().to_string()),
            },
            zbus::Error::InputOutput(e) if e.kind() == std::io::ErrorKind::TimedOut => CallError {
                text: format!("{method}: no answer in {} s", method.limit.as_secs()),
                name: None,
            },
            other => {
                // the connection may be broken (the bus restarted): the next call makes another
                self.connections.remove(&method.limit);
                self.once.retain(|(limit, _, _)| *limit != method.limit);
                CallError {
                    text: format!("{method}: {other}"),
                    name: None,
                }
            }
        }
    }

    fn connection(&mut self, limit: Duration) -> anyhow::Result<Connection> {
        if let Some(connection) = self.connections.get(&limit) {
            return Ok(connection.clone());
        }
        let connection = connect(limit)?;
        self.connections.insert(limit, connection.clone());
        Ok(connection)
    }
}

/// A connection to the system bus whose method calls answer within `limit`, made within
/// `limit` too (zbus bounds no handshake: it runs in a thread of its own, left behind if the
/// bus never answers).
fn connect(limit: Duration) -> anyhow::Result<Connection> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("system-bus".into())
        .spawn(move || {
            let made = connection::Builder::system().and_then(|b| b.method_timeout(limit).build());
            let _ = sender.send(made);
        })
        .context("connecting to the system bus: no thread")?;
    match receiver.recv_timeout(limit) {
        Ok(made) => made.context("connecting to the system bus"),
        Err(_) => Err(anyhow!(
            "connecting to the system bus: no answer in {} s",
            limit.as_secs()
        )),
    }
}

/// The signature a message with body `body` carries in its header (what a call sends).
#[cfg(test)]
pub fn signature_of<B: Serialize + DynamicType>(body: &B) -> String {
    let message = zbus::Message::method_call("/", "M")
        .unwrap()
        .build(body)
        .unwrap();
    message.body().signature().to_string_no_parens()
}

/// `body` sent in a message and read back as `R`, the way a reply is read.
#[cfg(test)]
pub fn decode<B: Serialize + DynamicType, R: DeserializeOwned + Type>(
    body: &B,
) -> anyhow::Result<R> {
    let message = zbus::Message::method_call("/", "M")?.build(body)?;
    Ok(message.body().deserialize::<R>()?)
}

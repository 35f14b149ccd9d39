//! `portable-service-agent COMMAND NAME`: one run for image NAME, as its units start it (see
//! the crate's documentation); its configuration is `/etc/portable-service-agent/NAME.json`,
//! written by Nix (`image.sysupdate { ... }`).

use portable_service_agent::agent::{self, Command};
use portable_service_agent::config::Config;
use portable_service_agent::real::{RealHost, Settings};
use std::process::ExitCode;

const USAGE: &str = "\
usage: portable-service-agent [--config FILE] COMMAND NAME

  update NAME        fetch NAME's feed, install its newest version beside the running one,
                     switch to it and keep it only once its units proved healthy
  rollback NAME      go back to the version that ran before, and never take this one again
  recover NAME       finish a switch the host went down in (run at every boot)
  status NAME        what runs, what was refused, how the last run ended
  clear NAME [FILE]  forget that FILE (NAME_VERSION.raw), or every version, was bad

  --config FILE      the image's configuration (default: /etc/portable-service-agent/NAME.json)

exit status: 0 done, 1 failed (the status file and the journal say why), 64 usage";

/// The configuration directory that `cp -r result/. /etc/` fills.
const CONFIG_DIR: &str = "/etc/portable-service-agent";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok((config, verb, name)) => run(config, &verb, &name),
        Err(why) => {
            eprintln!("portable-service-agent: {why}\n\n{USAGE}");
            // as the tools' usage errors (docs/cli.md): apart from a failed run
            ExitCode::from(64)
        }
    }
}

/// What was asked: a run of the agent, or its status.
enum Verb {
    Run(Command),
    Status,
}

/// (configuration file, what was asked, image name) from the arguments.
fn parse(args: &[String]) -> Result<(Option<String>, Verb, String), String> {
    let mut args = args.to_vec();
    let mut config = None;
    if let Some(i) = args.iter().position(|a| a == "--config") {
        args.remove(i);
        config = Some(args.get(i).cloned().ok_or("--config needs a FILE")?);
        args.remove(i);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    if args.iter().any(|a| a == "--version") {
        println!("portable-service-agent {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    let (verb, name) = match args.as_slice() {
        [verb, name, ..] => (verb.as_str(), name.clone()),
        _ => return Err("a COMMAND and an image NAME are needed".into()),
    };
    if !portable_service_rules::names::is_image_name(&name) {
        return Err(format!("{name:?} is not an image name"));
    }
    let extra = &args[2..];
    let verb = match (verb, extra) {
        ("update", []) => Verb::Run(Command::Update),
        ("rollback", []) => Verb::Run(Command::Rollback),
        ("recover", []) => Verb::Run(Command::Recover),
        ("status", []) => Verb::Status,
        ("clear", []) => Verb::Run(Command::Clear(None)),
        ("clear", [file]) => Verb::Run(Command::Clear(Some(file.clone()))),
        _ => {
            return Err(format!(
                "unknown command or extra arguments: {}",
                args.join(" ")
            ))
        }
    };
    Ok((config, verb, name))
}

fn run(config: Option<String>, verb: &Verb, name: &str) -> ExitCode {
    let path = config.unwrap_or_else(|| format!("{CONFIG_DIR}/{name}.json"));
    let cfg: Config = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portable-service-agent: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match verb {
        Verb::Run(c) => c,
        Verb::Status => return status(&cfg),
    };
    let mut host = RealHost::new(Settings {
        profile: cfg.profile.clone().unwrap_or_else(|| "default".into()),
        ..Settings::default()
    });
    let report = agent::run(&mut host, &cfg, command);
    println!("STATE={}\nMESSAGE={}", report.state, report.message);
    if report.state == "failed" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The status file of the image's last run, as it is (a fleet's monitoring reads it too).
fn status(cfg: &Config) -> ExitCode {
    match std::fs::read_to_string(format!("{}/status", cfg.state())) {
        Ok(text) => print!("{text}"),
        Err(_) => println!("STATE=never-run"),
    }
    ExitCode::SUCCESS
}

//! `amqpwire fuzz-peer`: fuzz another AMQP implementation, server or client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use amqpwire::fuzzpeer::scenarios::{names, scenario, Role, Sasl};
use amqpwire::runtime::fuzzpeer::{
    lines, read_steps, shell_word, Campaign, Kind, Mode, Say, Settings, Stop, Underway,
};
use amqpwire::runtime::transport::{AcceptConfig, ClientTlsConfig, Endpoint, TlsServerConfig};

use super::client::runtime;

/// Arguments of `amqpwire fuzz-peer`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["connect", "listen"])))]
pub(crate) struct FuzzPeerArgs {
    /// Attack the server at this URL (amqp, amqps, ws, wss).
    #[arg(long, value_name = "URL", conflicts_with = "listen")]
    connect: Option<String>,
    /// Attack clients: listen at this URL; --exec starts a client for each case.
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    /// The command that starts the target, run by `sh` as `exec CMD` (so the process
    /// watched is the target itself; leading `NAME=value` assignments are kept): a server is
    /// started once and again whenever it dies; a client once per case. `{url}` and
    /// `{port}` are replaced.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// The target's process id, when it runs already (its death and memory are watched).
    #[arg(long, value_name = "PID", conflicts_with = "exec")]
    pid: Option<u32>,
    /// A finding when the target's resident memory passes this many MiB (needs a process
    /// to watch: --exec or --pid).
    #[arg(long, value_name = "MIB")]
    max_rss: Option<u64>,
    /// Built-in scenarios to mutate (repeatable; default: all for the role). Client role:
    /// sasl, open, session, sender, multi-frame, receiver, drain, two-sessions; server
    /// role: serve-open, serve-sender, serve-receiver.
    #[arg(long, value_name = "NAME")]
    scenario: Vec<String>,
    /// A script to mutate (a recording, or any script; repeatable): with --scenario, beside
    /// the scenarios named; without, instead of the built-in ones. Checked as `amqpwire
    /// script` checks a script.
    #[arg(long, value_name = "FILE")]
    script: Vec<PathBuf>,
    /// SASL of the scenarios and the probe: none, anonymous, plain, scram (SCRAM-SHA-256)
    /// or external (with --client-cert). A listening campaign offers ANONYMOUS, PLAIN and
    /// EXTERNAL unless this is none.
    #[arg(long, value_name = "MECH", default_value = "anonymous")]
    sasl: String,
    /// The user name for --sasl plain and scram.
    #[arg(long, default_value = "guest")]
    user: String,
    /// The password for --sasl plain and scram.
    #[arg(long, default_value = "guest")]
    password: String,
    /// A client certificate (PEM) to present to amqps:// and wss:// servers (for --sasl
    /// external).
    #[arg(long, value_name = "PEM", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The node the scenarios' links attach to.
    #[arg(long, default_value = "fuzz")]
    address: String,
    /// The campaign's seed (default: a fresh one, printed): the same seed gives the same
    /// cases.
    #[arg(long)]
    seed: Option<u64>,
    /// The number of the first case (to play again one case of a campaign).
    #[arg(long, default_value_t = 0)]
    first_case: u64,
    /// Stop after this many cases.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    cases: Option<u64>,
    /// Stop after this many seconds (the case under way is dropped, a finding being
    /// minimised saved as it stands).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// How long a case waits for each answer it paces on, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(1..))]
    within: u64,
    /// How long the probe after each case waits for each answer before the target counts
    /// as hung, in milliseconds (a client: four times this to connect and to end; this
    /// alone to end once a hang is known).
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    probe_within: u64,
    /// Where findings (and the target's log) are written [default: fuzz-peer-findings; with
    /// --replay, the folder of the file replayed].
    #[arg(long, value_name = "DIR")]
    findings: Option<PathBuf>,
    /// Seconds spent minimising each finding (0: keep the case as it was).
    #[arg(long, value_name = "S", default_value_t = 60)]
    minimise: u64,
    /// Play one saved case (a finding) and report what it does, and whether it is the
    /// finding the file saved; exit 1 if it finds.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Print the case that --seed and --first-case give, and exit.
    #[arg(long, conflicts_with = "replay")]
    print_case: bool,
    /// Trust the CAs in this PEM file (--connect to amqps:// or wss://).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// The certificate (PEM) for --listen on amqps:// or wss://.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// A line for every case: number, scenario, time taken, mutations.
    #[arg(long)]
    verbose: bool,
}

pub(crate) fn run(a: &FuzzPeerArgs) -> Result<ExitCode, String> {
    let sasl = match a.sasl.as_str() {
        "none" => Sasl::None,
        "anonymous" => Sasl::Anonymous,
        "plain" => Sasl::Plain { user: a.user.clone(), password: a.password.clone() },
        "scram" => Sasl::Scram { user: a.user.clone(), password: a.password.clone() },
        "external" => Sasl::External,
        other => return Err(format!("--sasl {other}: none, anonymous, plain, scram or external")),
    };
    let (mode, role, target_args) = match (&a.connect, &a.listen) {
        (Some(url), _) => {
            let endpoint: Endpoint = url.parse().map_err(|e| format!("{url}: {e}"))?;
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &a.ca {
                tls = tls.with_ca_file(ca).map_err(|e| e.to_string())?;
            }
            if let (Some(c), Some(k)) = (&a.client_cert, &a.client_key) {
                tls = tls.with_client_cert_files(c, k).map_err(|e| e.to_string())?;
            }
            (Mode::Connect { endpoint, tls }, Role::Client, opt("--connect", url))
        }
        (None, Some(url)) => {
            let endpoint = Endpoint::parse_listen(url).map_err(|e| format!("{url}: {e}"))?;
            let tls = match (&a.cert, &a.key) {
                (Some(c), Some(k)) => {
                    Some(TlsServerConfig::from_pem_files(c, k).map_err(|e| e.to_string())?)
                }
                _ => None,
            };
            if a.exec.is_none() && a.replay.is_none() && !a.print_case {
                return Err("--listen needs --exec CMD to start a client for each case".into());
            }
            AcceptConfig::check(&endpoint, tls.as_ref())
                .map_err(|e| format!("--listen {url}: {e} (--cert and --key)"))?;
            (Mode::Listen { endpoint, tls }, Role::Server, opt("--listen", url))
        }
        (None, None) => return Err("give --connect URL or --listen URL".into()),
    };
    if a.max_rss.is_some() && a.exec.is_none() && a.pid.is_none() {
        return Err("--max-rss needs a process to watch: --exec CMD or --pid PID".into());
    }
    // What the saved findings' replay and regenerate lines repeat: every option that
    // shapes a case's bytes (scenarios, scripts, address, SASL) or its verdict (the
    // waits, the memory limit), so that either line, run as printed, plays the same case
    // and judges it the same way.
    // Each as `--flag=value`, quoted for `sh`: a value that starts with `-` stays a value.
    let mut target_args = target_args + &opt(" --sasl", &a.sasl);
    if matches!(a.sasl.as_str(), "plain" | "scram") {
        target_args += &(opt(" --user", &a.user) + &opt(" --password", &a.password));
    }
    if let Some(cmd) = &a.exec {
        target_args += &opt(" --exec", cmd);
    }
    if let Some(pid) = a.pid {
        target_args += &opt(" --pid", &pid.to_string());
    }
    for (flag, path) in [
        (" --ca", &a.ca),
        (" --cert", &a.cert),
        (" --key", &a.key),
        (" --client-cert", &a.client_cert),
        (" --client-key", &a.client_key),
    ] {
        if let Some(p) = path {
            target_args += &opt(flag, &p.display().to_string());
        }
    }
    if a.address != "fuzz" {
        target_args += &opt(" --address", &a.address);
    }
    if a.within != 250 {
        target_args += &opt(" --within", &a.within.to_string());
    }
    if a.probe_within != 5000 {
        target_args += &opt(" --probe-within", &a.probe_within.to_string());
    }
    if let Some(m) = a.max_rss {
        target_args += &opt(" --max-rss", &m.to_string());
    }
    let mut scenarios = Vec::new();
    let chosen: Vec<String> = if a.scenario.is_empty() && a.script.is_empty() {
        names(role).iter().map(|s| (*s).to_owned()).collect()
    } else {
        a.scenario.clone()
    };
    for name in &chosen {
        // A scenario of the other role would play the wrong side of the exchange: a
        // server's steps sent to a server test nothing, and wait for ever on a client.
        let steps = names(role)
            .contains(&name.as_str())
            .then(|| scenario(name, &sasl, &a.address))
            .flatten()
            .ok_or_else(|| {
                format!("no scenario {name:?} (for this role: {})", names(role).join(", "))
            })?;
        scenarios.push((name.clone(), steps));
    }
    for name in &a.scenario {
        target_args += &opt(" --scenario", name);
    }
    for path in &a.script {
        let (steps, _) = read_steps(path, Duration::from_millis(a.within))?;
        scenarios.push((path.display().to_string(), steps));
        target_args += &opt(" --script", &path.display().to_string());
    }
    let seed = a.seed.unwrap_or_else(fresh_seed);
    // A replay's target writes its log beside the finding, not into a folder made where
    // the replay line was pasted.
    let findings =
        a.findings.clone().unwrap_or_else(|| match a.replay.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            Some(_) => PathBuf::from("."),
            None => PathBuf::from("fuzz-peer-findings"),
        });
    let settings = Settings {
        mode,
        scenarios,
        sasl,
        seed,
        cases: a.cases.or(if a.seconds.is_none() { Some(1000) } else { None }),
        time: a.seconds.map(Duration::from_secs),
        within: Duration::from_millis(a.within),
        probe_within: Duration::from_millis(a.probe_within),
        exec: a.exec.clone(),
        pid: a.pid,
        max_rss_kib: a.max_rss.map(|m| m * 1024),
        findings: findings.clone(),
        minimise: Duration::from_secs(a.minimise),
        target_args,
        progress: (!a.quiet).then_some(Duration::from_secs(2)),
        verbose: a.verbose,
        say: Say(Some(std::sync::Arc::new(|line: &str| eprintln!("{line}")))),
        stop: Stop::default(),
    };
    let stop = settings.stop.clone();
    if a.print_case {
        return print_case(settings, a.first_case);
    }
    // Read and checked before anything is started or made (the findings folder).
    let replay = match &a.replay {
        Some(p) => {
            let (steps, text) = read_steps(p, Duration::from_millis(a.within))?;
            // The finding it saved, to tell whether the replay finds the same.
            let saved =
                text.lines().find_map(|l| l.strip_prefix("# signature: ").map(str::to_owned));
            let not_alone = text.lines().any(|l| l.starts_with("# does not come back alone"));
            Some((lines(&steps), saved, not_alone))
        }
        None => None,
    };
    runtime()?.block_on(async {
        // SIGINT or SIGTERM: the campaign stops (the case under way dropped, a finding
        // being minimised saved as it stands), kills its target and gives its summary.
        let code = std::sync::Arc::new(std::sync::OnceLock::new());
        on_signals(stop.clone(), std::sync::Arc::clone(&code));
        let interrupted = |code: &std::sync::OnceLock<ExitCode>| {
            eprintln!("amqpwire: fuzz-peer stopped by a signal");
            *code.get().unwrap_or(&ExitCode::from(130))
        };
        let mut campaign = tokio::select! {
            c = Campaign::new(settings) => c?,
            () = stop.stopped() => return Ok(interrupted(&code)),
        };
        if let Some(e) = campaign.listening() {
            println!("listening on {e}");
        }
        if let Some((text, saved, not_alone)) = &replay {
            campaign.replaying();
            let judged = tokio::select! {
                j = campaign.judge(text) => j?,
                () = stop.stopped() => return Ok(interrupted(&code)),
            };
            return Ok(match judged {
                Some(f) => {
                    println!("{}: {}", f.kind.name(), f.detail);
                    match saved {
                        Some(sig) if *sig == f.signature() => {
                            println!("the finding the file saved (signature: {sig})");
                        }
                        Some(sig) => println!(
                            "not the finding the file saved: it was {sig}, this is {}",
                            f.signature()
                        ),
                        None => {}
                    }
                    if !f.evidence.is_empty() {
                        println!("the target's frame: {}", f.evidence);
                    }
                    for l in f.last_words.lines() {
                        println!("target: {l}");
                    }
                    ExitCode::from(1)
                }
                None if *not_alone => {
                    println!("nothing found: the target survived and answered well-formed");
                    println!(
                        "but the file says this finding does not come back alone: it needs \
                         the cases before it, so this replay cannot tell whether it is fixed \
                         (its regenerate line, with the cases the file names, plays them)"
                    );
                    // Neither fixed (0) nor found (1), nor a replay that could not run (2).
                    ExitCode::from(3)
                }
                None => {
                    println!("nothing found: the target survived and answered well-formed");
                    ExitCode::SUCCESS
                }
            });
        }
        eprintln!("fuzz-peer: seed {seed}");
        let sum = campaign.run_from(a.first_case).await;
        let secs = sum.elapsed.as_secs_f64();
        println!(
            "{} cases in {secs:.1} s ({:.1}/s), seed {seed}, {} target restarts",
            sum.cases,
            sum.cases as f64 / secs.max(1e-9),
            sum.restarts
        );
        for (f, path) in &sum.findings {
            // The signature tells findings of one kind apart (two crashes, each with
            // exit status 1, at different places).
            let sig = f.signature();
            let sig = sig.strip_prefix(f.kind.name()).unwrap_or(&sig).trim();
            let sig = if sig.is_empty() || f.detail.contains(sig) {
                String::new()
            } else {
                format!(" [{sig}]")
            };
            println!("{}: {}{sig} -> {}", f.kind.name(), f.detail, path.display());
            if sum.not_alone.contains(path) {
                println!(
                    "  (it does not come back alone on a freshly started target: it needs \
                     earlier cases, which the file names)"
                );
            }
        }
        let mut repeats: Vec<(&Kind, &u64)> = sum.repeats.iter().collect();
        repeats.sort();
        for (k, n) in repeats {
            println!("{n} more {} findings repeated one above", k.name());
        }
        if sum.cut_hangs > 0 {
            println!(
                "{} of those hangs judged after --probe-within alone, a hang being known",
                sum.cut_hangs
            );
        }
        if sum.findings.is_empty()
            && sum.stopped.is_none()
            && !sum.interrupted
            && !sum.no_more_cases
        {
            println!("no findings");
        }
        if sum.unconnected > 0 {
            println!("{}: the client never connected", cases(sum.unconnected));
        }
        if sum.header_only * 2 > sum.cases {
            println!(
                "{} of {} cases: the client sent no more than a protocol header, which tests \
                 little (is --sasl {} what it speaks? --sasl none is for a client without SASL)",
                sum.header_only, sum.cases, a.sasl
            );
        }
        if sum.failed_exits > 0 {
            println!(
                "{}: the client exited with a non-zero status (not judged a crash; its \
                 output is in {})",
                cases(sum.failed_exits),
                findings.join("target.log").display()
            );
        }
        if let Some(why) = &sum.stopped {
            println!("stopped early: {why}");
        }
        if sum.no_more_cases {
            println!("stopped early: case {} is the last there is", u64::MAX);
        }
        if sum.interrupted {
            println!("stopped early: a signal");
        }
        match sum.out_of_time {
            Some(Underway::Case) => {
                println!("the case under way when --seconds ran out was dropped, not judged")
            }
            Some(Underway::Restart) => {
                println!("--seconds ran out while the target was being started again")
            }
            None => {}
        }
        Ok(match (sum.findings.is_empty(), &sum.stopped) {
            (false, _) => ExitCode::from(1),
            (true, None) if sum.interrupted => interrupted(&code),
            // Fewer cases than asked for exist: the campaign could not run as asked.
            (true, None) if sum.no_more_cases => {
                eprintln!(
                    "amqpwire: fuzz-peer stopped early: case {} is the last there is",
                    u64::MAX
                );
                ExitCode::from(2)
            }
            // Nothing found, but the campaign could not run as asked.
            (true, Some(why)) => {
                eprintln!("amqpwire: fuzz-peer stopped early: {why}");
                ExitCode::from(2)
            }
            (true, None) => ExitCode::SUCCESS,
        })
    })
}

fn print_case(settings: Settings, index: u64) -> Result<ExitCode, String> {
    let (name, case) = amqpwire::runtime::fuzzpeer::case(&settings.scenarios, settings.seed, index);
    println!("# seed {}, case {index}, scenario {name}", settings.seed);
    for m in &case.mutations {
        println!("# mutation: {m}");
    }
    print!("{}", lines(&case.steps));
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM stops the campaign (`stop`), with the exit status a shell gives a
/// process stopped by it (130 or 143, in `code`); a second one kills the target and
/// exits at once, for a campaign stuck starting a target again.
fn on_signals(stop: Stop, code: std::sync::Arc<std::sync::OnceLock<ExitCode>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return; // no handler could be set: the signals keep their default action
    };
    tokio::spawn(async move {
        let mut told = false;
        loop {
            let status: u8 = tokio::select! {
                _ = int.recv() => 130,
                _ = term.recv() => 143,
            };
            if told {
                stop.kill_target();
                std::process::exit(i32::from(status));
            }
            told = true;
            let _ = code.set(ExitCode::from(status));
            eprintln!("amqpwire: fuzz-peer stopping (a second signal stops it at once)");
            stop.stop();
        }
    });
}

/// "1 case", "2 cases".
fn cases(n: u64) -> String {
    format!("{n} case{}", if n == 1 { "" } else { "s" })
}

/// `FLAG=VALUE`, the value quoted for `sh`.
fn opt(flag: &str, value: &str) -> String {
    format!("{flag}={}", shell_word(value))
}

/// A seed from the clock and the process id.
fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ u64::from(std::process::id()).rotate_left(32)) % 1_000_000_000
}

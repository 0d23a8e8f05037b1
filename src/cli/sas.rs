//! `amqpwire sas-token`: make an Azure SAS token from a connection string or a key, or
//! check one.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqpwire::azure::{ConnectionString, Credential, SasKey, SasToken};

/// The lifetime of a token when neither `--ttl` nor `--expiry` is given: an hour, as the
/// Azure SDKs use.
const DEFAULT_TTL: u64 = 3600;

/// Arguments of `amqpwire sas-token`.
///
/// clap waives a `requires` whose target conflicts with an argument that is present, so
/// the options of one mode also name the other mode's arguments as conflicts.
#[derive(clap::Args, Debug)]
#[command(
    group(clap::ArgGroup::new("input").required(true).multiple(true)
        .args(["connection_string", "uri", "verify"])),
    group(clap::ArgGroup::new("key_source").args(["connection_string", "key"])),
)]
pub(crate) struct SasTokenArgs {
    /// An IoT Hub or Event Hubs connection string: the key, the policy and the resource
    /// come from it.
    #[arg(long, value_name = "CS", conflicts_with_all = ["uri", "key"])]
    connection_string: Option<String>,
    /// The resource URI to sign for, not encoded (such as
    /// myhub.azure-devices.net/devices/device1); it is percent-encoded into `sr`.
    #[arg(long, value_name = "URI", requires = "key", conflicts_with = "verify")]
    uri: Option<String>,
    /// The shared access key, in base64.
    #[arg(long, value_name = "BASE64")]
    key: Option<String>,
    /// Key the HMAC with --key's text, as Event Hubs and Service Bus do, instead of its
    /// base64 decoding, as IoT Hub does (an Event Hubs connection string does this by
    /// itself).
    #[arg(long, requires = "key")]
    text_key: bool,
    /// The shared access policy the key belongs to (`skn`); leave it out for a device key.
    #[arg(long, value_name = "NAME", requires = "uri", conflicts_with_all = ["connection_string", "verify"])]
    policy: Option<String>,
    /// Put --uri into `sr` as given, without percent-encoding it (what the Azure C SDK
    /// sends).
    #[arg(long, requires = "uri", conflicts_with_all = ["connection_string", "verify"])]
    literal_sr: bool,
    /// The token expires this many seconds from now [default: 3600].
    #[arg(long, value_name = "SECS", conflicts_with_all = ["expiry", "verify"])]
    ttl: Option<u64>,
    /// The token expires at this time, in seconds since the Unix epoch (`se`).
    #[arg(long, value_name = "UNIX", conflicts_with = "verify")]
    expiry: Option<u64>,
    /// Check this token instead of making one: print its fields, whether --key (or the
    /// connection string's key) made its signature, and whether it has expired. Exits
    /// with 1 if the token does not pass.
    #[arg(long, value_name = "TOKEN", requires = "key_source")]
    verify: Option<String>,
    /// With --verify: also check that the token grants access to this resource URI (not
    /// encoded).
    #[arg(long, value_name = "URI", requires = "verify", conflicts_with = "uri")]
    resource: Option<String>,
    /// With --verify: how many seconds past its expiry a token is still accepted.
    #[arg(long, value_name = "SECS", requires = "verify", conflicts_with = "uri")]
    clock_skew: Option<u64>,
}

pub(crate) fn run(args: &SasTokenArgs) -> Result<ExitCode, String> {
    let now = SystemTime::now();
    match &args.verify {
        Some(token) => verify(args, token, now),
        None => generate(args, now),
    }
}

fn generate(args: &SasTokenArgs, now: SystemTime) -> Result<ExitCode, String> {
    let expiry = match (args.expiry, args.ttl) {
        (Some(e), _) => e,
        (None, ttl) => unix_seconds(now)
            .checked_add(ttl.unwrap_or(DEFAULT_TTL))
            .ok_or("--ttl is too large: the expiry does not fit in 64 bits")?,
    };
    let token = if let Some(cs) = &args.connection_string {
        let cs = parse_connection_string(cs)?;
        if matches!(cs.credential(), Credential::SharedAccessSignature(_))
            && (args.ttl.is_some() || args.expiry.is_some())
        {
            return Err("the connection string holds a SharedAccessSignature, whose expiry is \
                        fixed: leave out --ttl and --expiry"
                .into());
        }
        cs.sas_token(expiry).map_err(|e| format!("--connection-string: {e}"))?
    } else {
        // The argument groups make --uri and --key present here.
        let uri = args.uri.as_deref().ok_or("give --uri, --connection-string or --verify")?;
        let key = parse_key(args.key.as_deref(), args.text_key)?;
        let policy = args.policy.as_deref();
        let made = if args.literal_sr {
            SasToken::with_encoded_sr(uri, &key, policy, expiry)
        } else {
            SasToken::new(uri, &key, policy, expiry)
        };
        made.map_err(|e| format!("--uri: {e}"))?
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe is the reader's business; there is nothing else to say.
    let _ = writeln!(out, "{token}").and_then(|()| out.flush());
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &SasTokenArgs, token: &str, now: SystemTime) -> Result<ExitCode, String> {
    let key = match &args.connection_string {
        Some(cs) => match parse_connection_string(cs)?.credential() {
            Credential::SharedAccessKey(key) => key.clone(),
            Credential::SharedAccessSignature(_) => {
                return Err("the connection string has a SharedAccessSignature, not a \
                            SharedAccessKey to check a signature with"
                    .into())
            }
            Credential::X509 => {
                return Err("the connection string is an X.509 device's (x509=true): it has \
                            no SharedAccessKey to check a signature with"
                    .into())
            }
        },
        None => parse_key(args.key.as_deref(), args.text_key)?,
    };
    // A token that does not parse does not pass: said as a result, with status 1 (2 is
    // for what the command was given wrong, such as the key).
    let token: SasToken = match token.parse() {
        Ok(t) => t,
        Err(e) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{:<11}INVALID (not a SAS token: {e})", "result:");
            return Ok(ExitCode::from(1));
        }
    };
    let skew = Duration::from_secs(args.clock_skew.unwrap_or(300));
    let now_secs = unix_seconds(now);

    let signature_ok = token.signature_matches(&key);
    let expired = token.is_expired(now, skew);
    let covered = args.resource.as_deref().map(|r| token.authorizes(r));

    let mut report = String::new();
    let mut line = |label: &str, value: &str| report.push_str(&format!("{label:<11}{value}\n"));
    line("sr:", token.sr());
    line("audience:", token.audience());
    line("skn:", token.key_name().unwrap_or("(none: a device key)"));
    line("se:", &format!("{} ({})", token.expiry(), utc(token.expiry())));
    line("signature:", if signature_ok { "matches the key" } else { "DOES NOT MATCH the key" });
    line("expiry:", &expiry_status(token.expiry(), now_secs, skew.as_secs(), expired));
    if let (Some(resource), Some(covered)) = (&args.resource, covered) {
        let verdict = if covered { "covers" } else { "DOES NOT COVER" };
        line("resource:", &format!("the audience {verdict} {resource}"));
    }
    let mut problems = Vec::new();
    if !signature_ok {
        problems.push("signature does not match");
    }
    if expired {
        problems.push("expired");
    }
    if covered == Some(false) {
        problems.push("resource not covered");
    }
    if problems.is_empty() {
        line("result:", "valid");
    } else {
        line("result:", &format!("INVALID ({})", problems.join(", ")));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.as_bytes()).and_then(|()| out.flush());
    Ok(if problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn parse_connection_string(cs: &str) -> Result<ConnectionString, String> {
    cs.parse().map_err(|e| format!("--connection-string: {e}"))
}

fn parse_key(key: Option<&str>, text: bool) -> Result<SasKey, String> {
    let key = key.ok_or("give --key or --connection-string")?;
    let parsed = if text { SasKey::from_text(key) } else { SasKey::from_base64(key) };
    parsed.map_err(|e| format!("--key: {e}"))
}

/// How long until expiry, or since.
fn expiry_status(expiry: u64, now: u64, skew: u64, expired: bool) -> String {
    if now <= expiry {
        format!("valid for {}", human(expiry - now))
    } else if !expired {
        format!("expired {} ago, within the {skew}s clock skew", human(now - expiry))
    } else {
        format!("EXPIRED {} ago", human(now - expiry))
    }
}

/// A duration in its two largest units: `2d 3h`, `59m 40s`, `7s`.
fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian).
fn utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`), shifted
    // to eras that start on 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(12345), "1970-01-01 03:25:45 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
        // The far end does not overflow.
        assert!(utc(u64::MAX).ends_with(" UTC"));
    }

    #[test]
    fn writes_durations_in_two_units() {
        assert_eq!(human(7), "7s");
        assert_eq!(human(3580), "59m 40s");
        assert_eq!(human(3600), "1h 0m");
        assert_eq!(human(2 * 86_400 + 3 * 3600 + 5), "2d 3h");
    }

    #[test]
    fn says_how_the_expiry_stands() {
        assert_eq!(expiry_status(1000, 400, 300, false), "valid for 10m 0s");
        assert_eq!(
            expiry_status(1000, 1100, 300, false),
            "expired 1m 40s ago, within the 300s clock skew"
        );
        assert_eq!(expiry_status(1000, 1400, 300, true), "EXPIRED 6m 40s ago");
    }
}

//! What text may leave the process: error messages from S3 servers, endpoints and credential
//! providers pass through [`redact`] before they reach stderr, logs or the report.
//!
//! A server may echo request headers in its error body (the session token with them), an
//! `--endpoint-url` may carry `user:password@`, and a failing `credential_process` may print a
//! secret on its stderr, which the AWS SDK puts in its error. Three things are removed: URL
//! user information, the values of credential-like headers and query parameters, and every
//! secret value this process uses (the secret key and session token in the environment, and those
//! the credential chain returned, registered with [`register`]).

use std::sync::{Mutex, OnceLock};

/// Names whose values are secret, as a header (`name: value`), a query parameter or an
/// assignment (`name=value`); matched without regard to case.
const SECRET_NAMES: &[&str] = &[
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-credential",
    "authorization",
    "aws_secret_access_key",
    "aws_session_token",
    "secret_access_key",
    "session_token",
    "secretaccesskey",
    "sessiontoken",
    "password",
];

const HIDDEN: &str = "***";

fn registered() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let env = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
        Mutex::new(env.iter().filter_map(|k| std::env::var(k).ok()).filter(|v| v.len() >= 8).collect())
    })
}

/// Adds a secret value (a secret key, a session token) to those never printed.
pub fn register(secret: &str) {
    if secret.len() < 8 {
        return;
    }
    let mut secrets = registered().lock().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
}

/// `text` without URL user information, credential-like values or registered secrets.
pub fn redact(text: &str) -> String {
    let mut out = userinfo_hidden(text);
    for name in SECRET_NAMES {
        out = values_hidden(&out, name);
    }
    let secrets = registered().lock().unwrap_or_else(|e| e.into_inner());
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), HIDDEN);
        }
    }
    out
}

/// `scheme://user:password@host` becomes `scheme://***@host`.
fn userinfo_hidden(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail.find(|c: char| c == '/' || c.is_whitespace() || c == '"').unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(i) => {
                out.push_str(HIDDEN);
                rest = &tail[i..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The value after `name` followed by `:` or `=` (spaces, quotes and a scheme word such as
/// `Bearer` or `AWS4-HMAC-SHA256` allowed before it) becomes `***`, up to the next separator.
fn values_hidden(text: &str, name: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(i) = lower[from..].find(name).map(|i| from + i) {
        let mut j = i + name.len();
        let b = text.as_bytes();
        while j < b.len() && (b[j] == b' ' || b[j] == b'"' || b[j] == b'\'') {
            j += 1;
        }
        if j >= b.len() || (b[j] != b':' && b[j] != b'=') {
            out.push_str(&text[from..j.min(b.len())]);
            from = j.min(b.len());
            continue;
        }
        j += 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'"' || b[j] == b'\'') {
            j += 1;
        }
        // An Authorization header's value holds spaces (scheme, credential, signature): all of it
        // goes, to the end of the line or element; other values end at a space or separator.
        let ends = |c: char| match name {
            "authorization" => c == '\n' || c == '<' || c == '"',
            _ => c.is_whitespace() || "&\"'<,;".contains(c),
        };
        let end = text[j..].find(ends).map_or(text.len(), |k| j + k);
        out.push_str(&text[from..j]);
        out.push_str(HIDDEN);
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive() {
        register("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let cases = [
            ("http://admin:hunter22@127.0.0.1:9000/bucket", "http://***@127.0.0.1:9000/bucket"),
            ("no scheme here: user@host", "no scheme here: user@host"),
            (
                "<Header>X-Amz-Security-Token: FQoGZXIvYXdzEJr//////////wEaDNDEF</Header>",
                "<Header>X-Amz-Security-Token: ***</Header>",
            ),
            (
                "GET /k?X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=abc123 HTTP/1.1",
                "GET /k?X-Amz-Credential=***&X-Amz-Signature=*** HTTP/1.1",
            ),
            ("authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ff\nnext", "authorization: ***\nnext"),
            ("process said: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "process said: ***"),
            (
                "{\"SecretAccessKey\": \"abc/def\", \"SessionToken\": \"tok\"}",
                "{\"SecretAccessKey\": \"***\", \"SessionToken\": \"***\"}",
            ),
            ("NoSuchBucket: The specified bucket does not exist", "NoSuchBucket: The specified bucket does not exist"),
            ("password protected files", "password protected files"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text), want, "{text}");
        }
    }
}

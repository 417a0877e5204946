//! Bearer tokens: making new ones, and the tokens file that lists them.
//!
//! The file holds hashes, never tokens: `ROLE SHA256_HEX_OF_TOKEN [NAME]`
//! per line, `#` starts a comment. A box that is broken into gives away no
//! token. New tokens start with [`TOKEN_PREFIX`], so that one pasted into
//! the file in place of its hash is recognised at start and refused with a
//! message that says what to write instead.

use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Error;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Role {
    /// Get* and Watch*.
    Read,
    /// Everything, including SetRelay, RenewHold and the override RPCs.
    Control,
}

impl Role {
    /// Its name in the tokens file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Control => "control",
        }
    }
}

/// What every token made by `delestage token new` starts with.
pub const TOKEN_PREFIX: &str = "dlst_";

/// A freshly made token, and what the tokens file gets instead of it.
pub struct NewToken {
    /// The secret: shown once, kept by whoever uses it.
    pub token: String,
    /// The line for the tokens file.
    pub line: String,
}

impl NewToken {
    /// 256 random bits from the operating system, base64url, after
    /// [`TOKEN_PREFIX`].
    pub fn generate(role: Role, name: Option<&str>) -> Result<Self, Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Security(format!("no randomness from the system: {e}")))?;
        let token = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let mut line = format!("{} {}", role.name(), hash_hex(&token));
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            line.push(' ');
            line.push_str(name);
        }
        Ok(Self { token, line })
    }
}

/// The SHA-256 of `token`, as the tokens file writes it.
pub fn hash_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The accepted tokens, by the SHA-256 of each.
pub struct Tokens {
    entries: Vec<TokenEntry>,
}

struct TokenEntry {
    role: Role,
    hash: [u8; 32],
    name: String,
}

impl Tokens {
    /// Reads a tokens file (which must not be writable by others, see
    /// [`crate::files::check_private`]); errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        crate::files::check_private(path, "--tokens")?;
        let err = |e: &dyn std::fmt::Display| {
            Error::Security(format!("--tokens {}: {e}", path.display()))
        };
        // A line per token: a huge file is a mistake, not to be read whole.
        let bytes = crate::files::read_limited(path, crate::files::STATE_FILE_LIMIT)
            .map_err(|e| err(&e))?;
        let text = String::from_utf8(bytes).map_err(|e| err(&e))?;
        Self::parse(&text).map_err(|e| Error::Security(format!("--tokens {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(hash)) = (words.next(), words.next()) else {
                return Err(format!("line {}: write ROLE SHA256_HEX [NAME]", n + 1));
            };
            let role = match role {
                "read" => Role::Read,
                "control" => Role::Control,
                other => {
                    return Err(format!(
                        "line {}: role {other:?}: use read or control",
                        n + 1
                    ));
                }
            };
            if hash.starts_with(TOKEN_PREFIX) {
                return Err(format!(
                    "line {}: this is a token itself, not its hash. The file holds the SHA-256 of each token, \
                     so that it gives no token away: write `{} {}` instead (`delestage token new` prints \
                     such lines), and keep the token for the client",
                    n + 1,
                    role.name(),
                    hash_hex(hash)
                ));
            }
            let hash = parse_hex32(hash).ok_or_else(|| {
                format!(
                    "line {}: the second word must be the SHA-256 of the token, 64 hex digits \
                     (`delestage token new` makes a token and prints its line)",
                    n + 1
                )
            })?;
            let name = words.collect::<Vec<_>>().join(" ");
            entries.push(TokenEntry { role, hash, name });
        }
        if entries.is_empty() {
            return Err("no tokens in the file (every request would be refused)".to_owned());
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of `token`, and its name, if it is known.
    pub fn check(&self, token: &str) -> Option<(Role, &str)> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every entry, in constant time each, so timing does
        // not tell how much of a hash matched.
        let mut found = None;
        for e in &self.entries {
            let same = e
                .hash
                .iter()
                .zip(hash.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some((e.role, e.name.as_str()));
            }
        }
        found
    }

    /// Why an unknown `token` is refused, in words for the client. A
    /// presented string that is one of the file's hashes is a client that
    /// sent the hash (the file is right: tokens made by `delestage token
    /// new` are never 64 hex digits); anything else is just unknown.
    pub fn refusal(&self, token: &str) -> &'static str {
        let a_listed_hash = parse_hex32(token)
            .is_some_and(|as_hash| self.entries.iter().any(|e| e.hash == as_hash));
        if a_listed_hash {
            "unknown token: this looks like a token's hash (the tokens file holds hashes): \
             send the token itself, as `delestage token new` printed it"
        } else {
            "unknown token"
        }
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token";

    fn hash(token: &str) -> String {
        hash_hex(token)
    }

    #[test]
    fn tokens_file_roles_names_and_comments() {
        let text = format!(
            "# who may do what\nread {} dashboard\ncontrol {}   # the controller\n",
            hash("reader"),
            hash(TOKEN)
        );
        let tokens = Tokens::parse(&text).expect("valid");
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.check("reader"), Some((Role::Read, "dashboard")));
        assert_eq!(tokens.check(TOKEN), Some((Role::Control, "")));
        assert_eq!(tokens.check("guess"), None);
    }

    #[test]
    fn bad_tokens_files_say_which_line() {
        for (text, expected) in [
            ("admin 00\n", "line 1: role \"admin\""),
            ("read nothex\n", "line 1: the second word"),
            ("\n# only comments\n", "no tokens"),
            (&format!("read {}\nread\n", hash("a")), "line 2"),
        ] {
            let err = Tokens::parse(text).err().unwrap_or_default();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn a_new_token_is_prefixed_random_and_its_line_works() {
        let a = NewToken::generate(Role::Control, Some("heat pump")).expect("token");
        let b = NewToken::generate(Role::Control, None).expect("token");
        assert!(a.token.starts_with(TOKEN_PREFIX), "{}", a.token);
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a.token, b.token);
        assert!(a.line.starts_with("control ") && a.line.ends_with(" heat pump"));
        assert!(!a.line.contains(&a.token), "the line never holds the token");
        let tokens = Tokens::parse(&format!("{}\n{}\n", a.line, b.line)).expect("valid");
        assert_eq!(tokens.check(&a.token), Some((Role::Control, "heat pump")));
        assert_eq!(tokens.check(&b.token), Some((Role::Control, "")));
    }

    #[test]
    fn a_token_pasted_in_place_of_its_hash_is_refused_with_the_right_line() {
        let new = NewToken::generate(Role::Read, None).expect("token");
        let err = Tokens::parse(&format!("read {}\n", new.token))
            .err()
            .unwrap_or_default();
        assert!(err.contains("line 1: this is a token itself"), "{err}");
        assert!(
            err.contains(&format!("`read {}`", hash(&new.token))),
            "{err}"
        );
    }

    #[test]
    fn a_client_that_sends_a_listed_hash_is_told_to_send_the_token() {
        let new = NewToken::generate(Role::Control, None).expect("a token");
        let listed = hash(&new.token);
        let tokens = Tokens::parse(&format!("control {listed}\n")).expect("a hash");
        assert_eq!(tokens.check(&listed), None, "the hash is not the token");
        let why = tokens.refusal(&listed);
        assert!(
            why.contains("looks like a token's hash") && why.contains("send the token itself"),
            "{why}"
        );
        assert!(!why.contains("fix"), "the file is right: {why}");
        assert_eq!(tokens.refusal("other"), "unknown token");
    }
}

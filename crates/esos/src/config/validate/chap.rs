//! CHAP blocks: names, secrets, and the rule that one secret serves one direction only.

use esos_iscsi::login::chap::constant_time_eq;

use super::Validator;
use crate::config::limits::{CHAP_NAME_MAX_LEN, CHAP_SECRET_MAX_LEN, CHAP_SECRET_MIN_LEN};
use crate::config::plan::Chap;
use crate::config::schema::{RawChap, RawConfig};

impl Validator {
    pub(super) fn chap(&mut self, raw: &RawChap, key: &str) -> Option<Chap> {
        let before = self.errors.len();
        self.chap_name(&raw.user, &format!("{key}.user"));
        self.chap_secret(&raw.secret, &format!("{key}.secret"));
        let mutual = match (&raw.mutual_user, &raw.mutual_secret) {
            (None, None) => None,
            (Some(_), None) => {
                self.err(
                    format!("{key}.mutual_secret"),
                    "is missing; mutual CHAP needs mutual_user and mutual_secret",
                );
                None
            }
            (None, Some(_)) => {
                self.err(
                    format!("{key}.mutual_user"),
                    "is missing; mutual CHAP needs mutual_user and mutual_secret",
                );
                None
            }
            (Some(u), Some(s)) => {
                self.chap_name(u, &format!("{key}.mutual_user"));
                self.chap_secret(s, &format!("{key}.mutual_secret"));
                // One secret for both directions lets an attacker who impersonates the
                // target learn the answer the initiator would accept (RFC 7143, CHAP).
                if s == &raw.secret {
                    self.err(format!("{key}.mutual_secret"), "must differ from secret");
                }
                Some((u.clone(), s.as_bytes().to_vec()))
            }
        };
        (self.errors.len() == before).then(|| Chap {
            user: raw.user.clone(),
            secret: raw.secret.as_bytes().to_vec(),
            mutual,
        })
    }

    /// RFC 7143 12.1.3: a secret that authenticates initiators must not authenticate the
    /// target anywhere, or a peer could have one side compute the other side's proof.
    /// `chap()` checks this within one block; this checks across all of them.
    pub(super) fn secrets_not_shared(&mut self, raw: &RawConfig) {
        let blocks: Vec<(String, &RawChap)> =
            raw.server
                .discovery_chap
                .iter()
                .map(|c| ("server.discovery_chap".to_owned(), c))
                .chain(
                    raw.target.iter().enumerate().filter_map(|(i, t)| {
                        t.chap.as_ref().map(|c| (format!("target[{i}].chap"), c))
                    }),
                )
                .collect();
        for (key, c) in &blocks {
            let Some(mutual) = &c.mutual_secret else {
                continue;
            };
            let clash = blocks.iter().find(|(k, other)| {
                k != key && constant_time_eq(other.secret.as_bytes(), mutual.as_bytes())
            });
            if let Some((other_key, _)) = clash {
                self.err(
                    format!("{key}.mutual_secret"),
                    format!(
                        "must differ from {other_key}.secret: a secret that authenticates \
                         initiators must not authenticate the target (RFC 7143 12.1.3)"
                    ),
                );
            }
        }
    }

    pub(super) fn chap_name(&mut self, name: &str, key: &str) {
        if name.is_empty() {
            self.err(key, "is empty");
        } else if name.len() > CHAP_NAME_MAX_LEN {
            self.err(
                key,
                format!("is {} bytes long; at most {CHAP_NAME_MAX_LEN}", name.len()),
            );
        } else if name.chars().any(|c| c.is_control()) {
            self.err(key, "contains a control character");
        }
    }

    /// Never echoes the secret, not even in an error.
    pub(super) fn chap_secret(&mut self, secret: &str, key: &str) {
        let n = secret.len();
        if n < CHAP_SECRET_MIN_LEN {
            self.err(
                key,
                format!(
                    "is {n} bytes long; CHAP secrets must be at least {CHAP_SECRET_MIN_LEN} bytes \
                     (RFC 7143 recommends 96 bits or more against offline dictionary attacks)"
                ),
            );
        } else if n > CHAP_SECRET_MAX_LEN {
            self.err(
                key,
                format!("is {n} bytes long; at most {CHAP_SECRET_MAX_LEN}"),
            );
        }
    }
}

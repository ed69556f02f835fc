//! The settings in force as a config file: `nudge check-config` prints
//! them so that an operator sees every default filled in, in the shape the
//! file accepts; fed back as the config file, the output gives the same
//! settings. Secrets are never printed: the voucher secret is left out
//! (a comment says whether one is set) and a password in a Redis URL reads
//! `<set>`. Admin tokens are listed with their names and roles, each value
//! `"<redacted>"` (so output with tokens is not a config file as is: put
//! the tokens back first).

use super::{LedgerBackend, SessionBackend, Settings};
use crate::domain::policy::OfferTrigger;
use std::time::Duration;
use toml::{Table, Value};

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> Value {
    int(d.as_secs())
}

fn millis(d: Duration) -> Value {
    int(d.as_millis())
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn path(p: &std::path::Path) -> Value {
    text(p.to_string_lossy())
}

/// A Redis URL with any password shown as `<set>`.
fn redacted(url: &str) -> Value {
    text(crate::redis::redact_url(url).replace("<redacted>", "<set>"))
}

fn section<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

impl Settings {
    /// The settings as TOML, every section with every value in force.
    pub fn to_toml(&self) -> String {
        let mut doc = Table::new();
        doc.insert("listen".into(), text(self.listen.to_string()));
        if let Some(m) = &self.model {
            doc.insert("model".into(), path(m));
        }
        doc.insert("data_dir".into(), path(&self.data_dir));

        let mut sessions = Table::new();
        sessions.insert("idle_ttl_secs".into(), secs(self.idle_ttl));
        sessions.insert("max_sessions".into(), int(self.max_sessions));
        let backend = match self.session_backend {
            SessionBackend::Memory => "memory",
            SessionBackend::Redis => "redis",
        };
        sessions.insert("backend".into(), text(backend));
        if let (Some(s), Some(r)) = (&self.session_redis, &self.redis) {
            if s.url != r.url {
                sessions.insert("redis_url".into(), redacted(&s.url));
            }
        }
        doc.insert("sessions".into(), Value::Table(sessions));

        let p = &self.policy;
        let mut policy = Table::new();
        policy.insert("min_intent_cents".into(), int(p.min_intent_cents));
        policy.insert("margin_rate".into(), Value::Float(p.margin_rate));
        policy.insert("offer_ttl_secs".into(), secs(self.offer_ttl));
        let tiers = p
            .tiers
            .iter()
            .map(|t| {
                section([
                    ("amount_cents", int(t.amount_cents)),
                    ("lift", Value::Float(t.lift)),
                ])
            })
            .collect();
        policy.insert("tiers".into(), Value::Array(tiers));
        match p.trigger {
            OfferTrigger::Any => {
                policy.insert("offer_on".into(), text("any"));
            }
            OfferTrigger::ExitIntent { window_ms } => {
                policy.insert("offer_on".into(), text("exit_intent"));
                policy.insert("exit_intent_window_ms".into(), int(window_ms));
            }
        }
        policy.insert("offer_on_priors".into(), Value::Boolean(p.offer_on_priors));
        doc.insert("policy".into(), Value::Table(policy));

        // Every campaign with its caps written out (the learning share is
        // already applied), in id order.
        let mut ids: Vec<&String> = self.budgets.campaigns.keys().collect();
        ids.sort();
        let campaigns = ids
            .into_iter()
            .map(|id| {
                let c = &self.budgets.campaigns[id];
                let mut t = Table::new();
                t.insert("id".into(), text(id.as_str()));
                t.insert("daily_cap_cents".into(), int(c.daily_cap_cents));
                if let Some(total) = c.total_cap_cents {
                    t.insert("total_cap_cents".into(), int(total));
                }
                t.insert("learning_cap_cents".into(), int(c.learning_cap_cents));
                if let Some(o) = self.campaign_overrides.get(id.as_str()) {
                    if let Some(v) = o.paused {
                        t.insert("paused".into(), Value::Boolean(v));
                    }
                    if let Some(v) = &o.tiers_cents {
                        t.insert(
                            "tiers_cents".into(),
                            Value::Array(v.iter().map(|a| int(*a)).collect()),
                        );
                    }
                    if let Some(v) = o.min_intent_cents {
                        t.insert("min_intent_cents".into(), int(v));
                    }
                    if let Some(v) = o.holdout_share {
                        t.insert("holdout_share".into(), Value::Float(v));
                    }
                    if let Some(v) = o.explore_share {
                        t.insert("explore_share".into(), Value::Float(v));
                    }
                    if let Some(v) = o.starts_at_ms {
                        t.insert("starts_at".into(), text(crate::campaigns::rfc3339(v)));
                    }
                    if let Some(v) = o.ends_at_ms {
                        t.insert("ends_at".into(), text(crate::campaigns::rfc3339(v)));
                    }
                }
                Value::Table(t)
            })
            .collect();
        doc.insert(
            "budget".into(),
            section([
                ("timezone", text(self.budgets.timezone.name())),
                ("learning_share", Value::Float(self.learning_share)),
                ("default_campaign", text(self.default_campaign.as_str())),
                ("campaigns", Value::Array(campaigns)),
            ]),
        );

        let l = &self.limits;
        doc.insert(
            "limits".into(),
            section([
                ("max_events_per_request", int(l.max_events_per_request)),
                ("max_request_bytes", int(l.max_request_bytes)),
                ("max_features", int(l.max_features)),
            ]),
        );

        let s = &self.server;
        let mut server = Table::new();
        if let Some(n) = s.max_connections {
            server.insert("max_connections".into(), int(n));
        }
        for (k, v) in [
            ("handshake_timeout_secs", secs(s.handshake_timeout)),
            ("idle_timeout_secs", secs(s.idle_timeout)),
            ("keepalive_interval_secs", secs(s.keepalive_interval)),
            ("keepalive_timeout_secs", secs(s.keepalive_timeout)),
            ("max_concurrent_streams", int(s.max_concurrent_streams)),
            ("max_concurrent_requests", int(s.max_concurrent_requests)),
            ("request_timeout_ms", millis(s.request_timeout)),
            ("max_frame_size", int(s.max_frame_size)),
            ("max_header_list_size", int(s.max_header_list_size)),
        ] {
            server.insert(k.into(), v);
        }
        doc.insert("server".into(), Value::Table(server));

        let backend = match self.ledger_backend {
            LedgerBackend::Sqlite => "sqlite",
            LedgerBackend::Redis => "redis",
            LedgerBackend::Memory => "memory",
        };
        doc.insert(
            "ledger".into(),
            section([
                ("backend", text(backend)),
                ("sweep_interval_secs", secs(self.sweep_interval)),
            ]),
        );

        if let Some(r) = &self.redis {
            let mut redis = Table::new();
            redis.insert("url".into(), redacted(&r.url));
            if let Some(ca) = &r.tls_ca_file {
                redis.insert("tls_ca_file".into(), path(ca));
            }
            redis.insert("key_prefix".into(), text(r.key_prefix.as_str()));
            redis.insert("timeout_ms".into(), millis(r.timeout));
            doc.insert("redis".into(), Value::Table(redis));
        }

        doc.insert(
            "voucher".into(),
            section([("min_order_cents", int(self.min_order_cents))]),
        );

        let e = &self.experiment;
        doc.insert(
            "experiment".into(),
            section([
                ("holdout_share", Value::Float(e.holdout_share)),
                ("explore_share", Value::Float(e.explore_share)),
                ("cold_explore_share", Value::Float(e.cold_explore_share)),
                ("salt", text(e.salt.as_str())),
            ]),
        );

        if let Ok(pacing) = Value::try_from(&self.pacing) {
            doc.insert("pacing".into(), pacing);
        }

        let log = match &self.log {
            None => section([("enabled", Value::Boolean(false))]),
            Some(l) => section([
                ("enabled", Value::Boolean(true)),
                ("rotate_bytes", int(l.rotate_bytes)),
                ("queue", int(l.queue)),
                ("retain_days", int(l.retention.max_age.as_secs() / 86_400)),
                ("retain_bytes", int(l.retention.max_bytes)),
                ("report_refresh_ms", millis(l.report_refresh)),
                ("report_max_sessions", int(l.report_max_sessions)),
            ]),
        };
        doc.insert("log".into(), log);

        // Tokens of the config file; those of NUDGE_ADMIN_TOKENS are named
        // in a comment (they are not the file's).
        let tokens: Vec<Value> = self
            .admin_tokens
            .list()
            .into_iter()
            .filter(|t| !t.from_env)
            .map(|t| {
                section([
                    ("name", text(t.name)),
                    ("role", text(t.role.as_str())),
                    ("token", text("<redacted>")),
                ])
            })
            .collect();
        let mut admin = Table::new();
        if !tokens.is_empty() {
            admin.insert("tokens".into(), Value::Array(tokens));
        }
        doc.insert("admin".into(), Value::Table(admin));

        if let Some(t) = &self.tls {
            doc.insert(
                "tls".into(),
                section([
                    ("cert_file", path(&t.cert_file)),
                    ("key_file", path(&t.key_file)),
                ]),
            );
        }

        let origins: Vec<Value> = match &self.cors {
            super::CorsOrigins::None => Vec::new(),
            super::CorsOrigins::Any => vec![text("*")],
            super::CorsOrigins::List(list) => list.iter().map(|o| text(o.as_str())).collect(),
        };
        doc.insert(
            "http".into(),
            section([("cors_allow_origins", Value::Array(origins))]),
        );

        let a = &self.autotrain;
        let mut autotrain = Table::new();
        autotrain.insert("enabled".into(), Value::Boolean(a.enabled));
        autotrain.insert("at".into(), text(a.at.format("%H:%M").to_string()));
        autotrain.insert("min_new_sessions".into(), int(a.min_new_sessions));
        if let Some(t) = &a.trainer {
            autotrain.insert("trainer".into(), path(t));
        }
        let args = a.extra_args.iter().map(|x| text(x.as_str())).collect();
        autotrain.insert("extra_args".into(), Value::Array(args));
        doc.insert("autotrain".into(), Value::Table(autotrain));
        doc.insert(
            "model_history".into(),
            section([("keep", int(self.model_history_keep))]),
        );

        let body = toml::to_string(&doc).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        self.with_comments(body)
    }

    /// What a value left out means, as a comment under its section.
    fn with_comments(&self, body: String) -> String {
        let mut notes: Vec<(&str, String)> = Vec::new();
        if self.model.is_none() {
            notes.push((
                "",
                format!(
                    "# model: not set: {} when that file exists, else the copy built into the binary",
                    super::DEFAULT_MODEL
                ),
            ));
        }
        let secret = match self.voucher_secret {
            Some(_) => "# secret = \"<set>\" (set in the config file; never printed)",
            None => "# secret: not set: NUDGE_VOUCHER_SECRET when set, else <data_dir>/voucher.key",
        };
        notes.push(("[voucher]", secret.to_owned()));
        if self.server.max_connections.is_none() {
            notes.push((
                "[server]",
                "# max_connections: not set: 4096, or less under a lower open-file limit (at start)"
                    .to_owned(),
            ));
        }
        if self.autotrain.trainer.is_none() {
            notes.push((
                "[autotrain]",
                "# trainer: not set: nudge-train beside the nudge executable, else on PATH"
                    .to_owned(),
            ));
        }
        let from_env: Vec<String> = self
            .admin_tokens
            .list()
            .into_iter()
            .filter(|t| t.from_env)
            .map(|t| format!("{} ({})", t.name, t.role))
            .collect();
        if self.admin_tokens.is_off() {
            notes.push((
                "",
                "# admin tokens: none: auth is off (every call allowed, both ports on loopback by default)"
                    .to_owned(),
            ));
        } else if !from_env.is_empty() {
            notes.push((
                "",
                format!(
                    "# admin tokens from {}: {}",
                    crate::auth::ENV_TOKENS,
                    from_env.join(", ")
                ),
            ));
        }
        let mut out = String::new();
        for (_, note) in notes.iter().filter(|(h, _)| h.is_empty()) {
            out.push_str(note);
            out.push('\n');
        }
        for line in body.lines() {
            out.push_str(line);
            out.push('\n');
            let under = |h: &&(&str, String)| !h.0.is_empty() && h.0 == line;
            for (_, note) in notes.iter().filter(under) {
                out.push_str(note);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::RawConfig;

    fn printed(text: &str) -> String {
        RawConfig::from_toml(text)
            .unwrap()
            .validate()
            .unwrap()
            .to_toml()
    }

    /// The printed settings, read back as the config file, print the same.
    #[test]
    fn printed_settings_read_back_the_same() {
        for text in [
            "",
            "listen = \"0.0.0.0:6000\"\nmodel = \"m.json\"\ndata_dir = \"/var/lib/nudge\"\n\
             [policy]\noffer_on = \"exit_intent\"\nmargin_rate = 0.25\n\
             [[policy.tiers]]\namount_cents = 700\nlift = 0.3\n\
             [budget]\ntimezone = \"Europe/Berlin\"\nlearning_share = 0.2\ndefault_campaign = \"b\"\n\
             campaigns = [{ id = \"b\", daily_cap_cents = 1001 }, { id = \"a\", daily_cap_cents = 5000, total_cap_cents = 90000, paused = true, tiers_cents = [700], min_intent_cents = 5000, holdout_share = 0.2, explore_share = 0.1, starts_at = \"2026-12-24T00:00:00Z\", ends_at = \"2026-12-27T00:00:00Z\" }]\n\
             [server]\nmax_connections = 100\n[log]\nretain_days = 3\n\
             [pacing]\nenabled = false\nkp = 12.5\n\
             [autotrain]\nenabled = true\nat = \"04:05\"\nmin_new_sessions = 50\ntrainer = \"/opt/nudge-train\"\nextra_args = [\"--seed\", \"3\"]",
            "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\nredis_url = \"redis://s:6379/1\"\n\
             [redis]\nurl = \"redis://money:6379/0\"\nkey_prefix = \"shop\"\ntimeout_ms = 300",
            "[log]\nenabled = false\n[ledger]\nbackend = \"memory\"",
        ] {
            let once = printed(text);
            let twice = printed(&once);
            assert_eq!(once, twice, "{text}");
            // And the settings themselves are equal: nothing left out.
            let a = RawConfig::from_toml(text).unwrap().validate().unwrap();
            let b = RawConfig::from_toml(&once).unwrap().validate().unwrap();
            assert_eq!(a.budgets.campaigns, b.budgets.campaigns, "{text}");
            let debug = |s: &crate::config::Settings| {
                let mut s = s.clone();
                s.budgets.campaigns.clear();
                format!("{s:?}")
            };
            assert_eq!(debug(&a), debug(&b), "{text}");
        }
        let s = printed(
            "[budget]\nlearning_share = 0.2\ncampaigns = [{ id = \"b\", daily_cap_cents = 1001 }]",
        );
        assert!(s.contains("learning_cap_cents = 200"), "{s}");
        assert!(s.contains("default_campaign = \"b\""), "{s}");
    }

    /// Every section is printed with its defaults filled in.
    #[test]
    fn defaults_are_written_out() {
        let s = printed("");
        assert_eq!(s.matches("# model: not set").count(), 1, "{s}");
        for line in [
            "listen = \"127.0.0.1:50051\"",
            "[autotrain]",
            "at = \"03:30\"",
            "min_new_sessions = 2000",
            "[sessions]",
            "idle_ttl_secs = 1800",
            "margin_rate = 0.3",
            "daily_cap_cents = 100000",
            "timezone = \"UTC\"",
            "[limits]",
            "request_timeout_ms = 5000",
            "backend = \"sqlite\"",
            "min_order_cents = 9900",
            "holdout_share = 0.1",
            "[pacing]",
            "retain_days = 14",
            "report_max_sessions = 1000000",
        ] {
            assert!(s.contains(line), "{line} missing in\n{s}");
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = printed(
            "[voucher]\nsecret = \"correct horse battery staple\"\n[ledger]\nbackend = \"redis\"\n\
             [redis]\nurl = \"redis://user:hunter2hunter2@h:6379/0\"",
        );
        assert!(!s.contains("horse") && !s.contains("hunter2"), "{s}");
        assert!(s.contains("redis://user:<set>@h:6379/0"), "{s}");
        assert!(s.contains("# secret = \"<set>\""), "{s}");
        let mut raw = RawConfig::from_toml(
            "[admin]\ntokens = [{ name = \"ops\", role = \"operator\", token = \"correct-horse-battery\" }]",
        )
        .unwrap();
        raw.admin.env_tokens = Some(crate::config::Secret(
            "web:client:staple-staple-staple".into(),
        ));
        let raw_copy = format!("{raw:?}");
        let settings = raw.validate().unwrap();
        let s = settings.to_toml();
        assert!(!s.contains("horse") && !s.contains("staple"), "{s}");
        assert!(s.contains("token = \"<redacted>\""), "{s}");
        assert!(
            s.contains("# admin tokens from NUDGE_ADMIN_TOKENS: web (client)"),
            "{s}"
        );
        let debug = format!("{settings:?}");
        let raw_debug = raw_copy;
        assert!(
            !raw_debug.contains("horse") && !raw_debug.contains("staple"),
            "{raw_debug}"
        );
        assert!(
            !debug.contains("horse") && !debug.contains("staple"),
            "{debug}"
        );
    }
}

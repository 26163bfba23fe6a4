//! The last warnings and errors the gateway logged, for the status page's
//! "last errors": a person who never reads a log still learns that the
//! provider refused a login or could not be reached. Log lines carry no
//! password, key or message text at any level (SECURITY.md rule 8), so
//! showing them adds nothing a log reader would not see.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Warnings kept.
const KEPT: usize = 50;
/// A longer line is cut (a field could carry a long provider answer).
const LONGEST: usize = 500;

/// One logged warning or error.
#[derive(Debug, Clone)]
pub struct Warning {
    pub at: SystemTime,
    pub level: Level,
    /// The message, then its fields as `name=value`.
    pub text: String,
}

/// The shared list, newest last.
#[derive(Debug, Clone, Default)]
pub struct RecentWarnings(Arc<Mutex<VecDeque<Warning>>>);

impl RecentWarnings {
    /// What was logged, newest first.
    pub fn newest_first(&self) -> Vec<Warning> {
        let list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        list.iter().rev().cloned().collect()
    }

    fn push(&self, warning: Warning) {
        let mut list = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() >= KEPT {
            list.pop_front();
        }
        list.push_back(warning);
    }

    /// The `tracing` layer that fills this list.
    pub fn layer(&self) -> WarningLayer {
        WarningLayer(self.clone())
    }
}

/// Records every WARN and ERROR event in a [`RecentWarnings`].
pub struct WarningLayer(RecentWarnings);

impl<S: Subscriber> Layer<S> for WarningLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        let mut text = line.message;
        text.push_str(&line.fields);
        let text = crate::render::cut(text, LONGEST, "…");
        self.0.push(Warning {
            at: SystemTime::now(),
            level,
            text,
        });
    }
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn warnings_and_errors_are_kept_newest_first_and_bounded() {
        let recent = RecentWarnings::default();
        let subscriber = tracing_subscriber::registry().with(recent.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(account = "alice@example.org", "provider refused the login");
            for i in 0..KEPT {
                tracing::error!(n = i, "again");
            }
            tracing::warn!(reply = %"x".repeat(2 * LONGEST), "long");
        });
        let list = recent.newest_first();
        assert_eq!(list.len(), KEPT);
        assert!(list[0].text.starts_with("long reply=xxx"));
        assert!(list[0].text.ends_with('…'));
        assert_eq!(list[1].text, format!("again n={}", KEPT - 1));
        assert!(list.iter().all(|w| !w.text.contains("not kept")));
    }
}

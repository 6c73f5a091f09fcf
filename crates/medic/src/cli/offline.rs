//! The data directory opened in this process through [`App::open`]: the offline side of [`Backend`]. Answers are
//! built by the same `App` methods and search function the daemon's handlers use, so offline and daemon output agree.

use anyhow::Context;
use serde_json::{Value, json};

use super::UsageError;
use super::backend::{Backend, TierArg};
use crate::app::App;
use crate::config::Config;

/// How long an offline text search waits for the text index to be built or caught up from the store.
pub const OFFLINE_INDEX_WAIT_S: u64 = 600;

/// Why the data directory could not be opened here.
pub enum OpenError {
    /// A live process holds its lock.
    Locked {
        /// Who: pid, host, start time.
        holder: String,
    },
    /// Anything else.
    Other(anyhow::Error),
}

/// The data directory opened in this process.
pub struct Offline {
    app: App,
    dir: String,
}

/// Opens the data directory named by `config.server.data_dir`; for a command that changes nothing when `read_only`
/// ([`App::open_read_only`]: not a byte of the directory is written).
pub fn open(config: &Config, read_only: bool) -> Result<Offline, OpenError> {
    let app = if read_only {
        App::open_read_only(config)
    } else {
        App::open(config)
    };
    match app {
        Ok(app) => {
            if let (Some(r), true) = (app.kb_recreated(), read_only) {
                eprintln!(
                    "warning: the knowledge base {} is damaged ({}); left as found (this command changes nothing), \
                     a fresh one is used for this command only; `medic serve` moves it aside",
                    r.damaged_file.display(),
                    r.reason,
                );
            } else if let Some(r) = app.kb_recreated() {
                // No log subscriber in a CLI command: say it on stderr.
                eprintln!(
                    "warning: the knowledge base {} was damaged ({}); it was moved to {} and a fresh one started \
                     (incident history starts over; documents are unaffected)",
                    r.damaged_file.display(),
                    r.reason,
                    r.moved_to.display()
                );
            }
            Ok(Offline {
                app,
                dir: config.server.data_dir.display().to_string(),
            })
        }
        Err(e) => {
            let locked = e
                .chain()
                .find_map(|c| match c.downcast_ref::<store::StoreError>() {
                    Some(store::StoreError::Locked { holder }) => Some(holder.clone()),
                    _ => None,
                });
            match locked {
                Some(holder) => Err(OpenError::Locked { holder }),
                None => Err(OpenError::Other(e)),
            }
        }
    }
}

impl Offline {
    /// Closes the data directory cleanly (in-flight commits finished, lock released), so the next process finds no
    /// stale lock.
    pub fn close(self) -> anyhow::Result<()> {
        let dir = self.dir;
        self.app
            .close()
            .with_context(|| format!("closing data directory {dir}"))
    }
}

/// A store error caused by the input (bad id, wrong dimension, too large) is a usage error: exit 2.
fn lift(e: store::StoreError) -> anyhow::Error {
    if e.is_user_error() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

fn doc_from(body: &Value) -> anyhow::Result<store::Document> {
    serde_json::from_value(body.clone()).map_err(|e| {
        UsageError(format!(
            "not a document {{\"text\", \"vector\"?, \"meta\"?}}: {e}"
        ))
        .into()
    })
}

impl Backend for Offline {
    fn describe(&self) -> String {
        format!("data directory {}", self.dir)
    }

    fn put(&self, collection: &str, id: &str, doc: &Value) -> anyhow::Result<Value> {
        let lsn = self
            .app
            .store()
            .put_in(collection, id, doc_from(doc)?)
            .map_err(lift)?;
        Ok(json!({"id": id, "lsn": lsn}))
    }

    fn put_batch(
        &self,
        collection: &str,
        docs: &[(u64, String, Value)],
    ) -> Option<anyhow::Result<()>> {
        let docs = docs
            .iter()
            .map(|(_, id, body)| Ok((id.clone(), doc_from(body)?)))
            .collect::<anyhow::Result<Vec<_>>>();
        Some(docs.and_then(|docs| {
            self.app
                .store()
                .put_batch_in(collection, docs)
                .map_err(lift)?;
            Ok(())
        }))
    }

    fn get(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>> {
        let doc = self.app.store().get_in(collection, id).map_err(lift)?;
        Ok(doc.map(|d| {
            let mut v = json!({"id": id, "text": d.text});
            if let Some(m) = v.as_object_mut() {
                if let Some(vec) = d.vector {
                    m.insert("vector".into(), crate::daemon::api::vector_json(&vec));
                }
                if let Some(meta) = d.meta {
                    m.insert("meta".into(), Value::Object(meta));
                }
            }
            v
        }))
    }

    fn delete(&self, collection: &str, id: &str) -> anyhow::Result<Option<Value>> {
        let lsn = self.app.store().delete_in(collection, id).map_err(lift)?;
        Ok(lsn.map(|lsn| json!({"id": id, "lsn": lsn})))
    }

    /// The daemon's search on the data directory: by text through the text index (attached now, caught up or
    /// rebuilt from the store, and waited for — at most [`OFFLINE_INDEX_WAIT_S`] —, so the answer is as of the
    /// log), by vector through a scan of the table.
    fn search(&self, collection: &str, query: &Value) -> anyhow::Result<Value> {
        let body: crate::search::SearchBody = serde_json::from_value(query.clone())
            .map_err(|e| UsageError(format!("search: {e}")))?;
        let wait = crate::search::Wait {
            strong: true,
            timeout: std::time::Duration::from_secs(OFFLINE_INDEX_WAIT_S),
        };
        if collection != store::collection::DEFAULT && body.text.is_some() {
            // Offline a named collection's text index is attached for the search (caught up or rebuilt).
            self.app
                .attach_collection_indexes(collection)
                .map_err(|e| UsageError(format!("{e:#}")))?;
        }
        crate::search::run_in(&self.app, collection, body, wait).map_err(|e| {
            if e.status.is_client_error() {
                anyhow::Error::from(UsageError(e.message))
            } else {
                anyhow::anyhow!(e.message)
            }
        })
    }

    fn collections(&self) -> anyhow::Result<Value> {
        let all = self
            .app
            .store()
            .collections()
            .map_err(lift)?
            .into_iter()
            .map(|c| crate::daemon::api::describe_collection(&self.app, &c.name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(json!({ "collections": all }))
    }

    fn create_collection(&self, name: &str, settings: &Value) -> anyhow::Result<Value> {
        let dim_max = self.app.store().config().limits.vector_dim_max;
        let s = store::CollectionSettings::from_json(settings, dim_max).map_err(lift)?;
        self.app.create_collection(name, s).map_err(lift)?;
        crate::daemon::api::describe_collection(&self.app, name)
            .map_err(|e| anyhow::anyhow!(e.message))
    }

    fn drop_collection(&self, name: &str) -> anyhow::Result<Value> {
        let n = self.app.drop_collection(name).map_err(lift)?;
        Ok(json!({"collection": name, "dropped": true, "documents_deleted": n}))
    }

    fn status(&self) -> anyhow::Result<Value> {
        // A fresh process has run no check yet: the shallow tier first, as the daemon's loop would have.
        self.app.status_checked()
    }

    fn check(&self, tier: TierArg) -> anyhow::Result<Value> {
        self.app
            .run_tier(tier.tier())
            .with_context(|| format!("running the {} checks", tier.name()))
    }

    fn heal(&self, dry_run: Option<bool>) -> anyhow::Result<Value> {
        self.app
            .run_cycle(dry_run)
            .context("running a healing cycle")
    }

    fn accept_loss(&self) -> anyhow::Result<Value> {
        self.app.accept_loss()
    }

    fn bundle(&self, id: u64) -> anyhow::Result<Option<Value>> {
        match crate::diagnostics::read(&self.app.config().server.data_dir, id) {
            Ok(v) => Ok(Some(v)),
            Err(crate::diagnostics::BundleError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn history(&self, q: &crate::history::HistoryQuery) -> anyhow::Result<Value> {
        crate::history::query(self.app.kb(), q, self.app.now()).map_err(super::views::lift_history)
    }

    fn period_report(
        &self,
        period: crate::report::Period,
        date: Option<&str>,
    ) -> anyhow::Result<Value> {
        let r = crate::report::build(
            self.app.kb(),
            period,
            date,
            self.app.now(),
            &self.app.config().report,
        )
        .map_err(|e| match e {
            crate::report::BuildError::BadDate(m) => UsageError(m).into(),
            other => anyhow::Error::from(other),
        })?;
        Ok(serde_json::to_value(&r)?)
    }

    fn incidents(
        &self,
        limit: usize,
        query: &crate::incident_filter::IncidentQuery,
    ) -> anyhow::Result<Value> {
        // The daemon's limit, from the same configuration key.
        let limit = self
            .app
            .config()
            .http
            .check_incidents_limit(u64::try_from(limit).unwrap_or(u64::MAX))
            .map_err(UsageError)?;
        let filter = crate::incident_filter::IncidentFilter::parse(query, self.app.now())
            .map_err(UsageError)?;
        let list = crate::incident_filter::list(&self.app, &filter, limit)?;
        Ok(json!({"incidents": list}))
    }

    fn incident(&self, id: u64) -> anyhow::Result<Option<Value>> {
        self.app.incident_detail(id)
    }
}

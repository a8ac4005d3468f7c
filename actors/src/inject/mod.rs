//! HTTP injection (`POST /api/inject/v1`, KumoMTA's API): one request names a message (raw, or
//! parts to build one from) and many recipients; each recipient becomes its own message.
//!
//! The order of work, and why:
//! 1. parse and check the whole request, compile its templates: any error refuses the request
//!    (400) before anything exists;
//! 2. render and build one message per recipient on a blocking thread (CPU work must not stall
//!    an arbiter); a render error fails that recipient only;
//! 3. `http_message_generated` per message on the Reception lane (the same message object as
//!    `smtp_server_message_received`); a rejection or error fails that recipient only;
//! 4. every surviving message in ONE spool commit (one fsync for the request), then its
//!    Reception record and its queue, as SMTP reception does;
//! 5. the answer: KumoMTA's counts, failed recipients and errors, only after the commit.

pub mod mime;
pub mod request;
pub mod template;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use serde_json::{Value, json};

use crate::model::queue_name::NULL_QUEUE;
use crate::model::record::PeerAddress;
use crate::model::{Message, RecordType};
use crate::policy::RebindNote;
use crate::smtp_server::Reception;
use crate::smtp_server::reception::EventRefusal;
use crate::spool::{SpoolError, SpoolOp};
use request::{BadRequest, Content, InjectV1Request, InjectV1Response};

/// What the HTTP layer hands over: the body (already bounded by `[http] max_inject_size`) and
/// who sent it.
pub struct InjectCall {
    pub body: Bytes,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// How the caller was admitted: `trusted_hosts` or `bearer_token` (meta `http_auth`).
    pub auth: &'static str,
}

/// A refusal of the whole request; nothing of it was spooled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("{0}")]
    BadRequest(String),
    /// The spool is full (`spool.map_size`): 507, try later.
    #[error("spool full: {0}")]
    SpoolFull(String),
    /// Spool failure or shutdown: 503, try later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<BadRequest> for InjectError {
    fn from(e: BadRequest) -> Self {
        InjectError::BadRequest(e.0)
    }
}

/// Injection's settings and the reception path it shares with SMTP.
pub struct Injector {
    pub reception: Arc<Reception>,
    /// `[http] max_inject_size`: also bounds one rendered part.
    pub max_size: usize,
    /// `[http] max_inject_recipients`.
    pub max_recipients: usize,
}

/// One recipient's message, or why there is none.
type Generated = Result<Message, Failure>;

/// A message that passed its event: the message, its queue, the rebinds its handler asked for.
type Prepared = Result<(Message, String, Vec<RebindNote>), Failure>;

#[derive(Debug)]
struct Failure {
    recipient: String,
    error: String,
}

impl Injector {
    pub async fn inject(&self, call: InjectCall) -> Result<InjectV1Response, InjectError> {
        let reception = self.reception.clone();
        let (max_size, max_recipients) = (self.max_size, self.max_recipients);
        let generated =
            tokio::task::spawn_blocking(move || generate(&reception, &call, max_size, max_recipients))
                .await
                .map_err(|e| InjectError::Unavailable(format!("message generation failed: {e}")))??;

        // Step 3, concurrently across the Reception lane's states.
        let handled = self.reception.policy.has_handler("http_message_generated");
        let prepared: Vec<Prepared> =
            futures_util::future::join_all(generated.into_iter().map(|g| async move {
                let msg = g?;
                let recipient = msg.recipients[0].clone();
                let (msg, notes) = if handled { self.run_policy(msg).await? } else { (msg, Vec::new()) };
                let queue = msg.queue_name().map_err(|e| Failure {
                    recipient: recipient.clone(),
                    error: format!("{recipient}: cannot compute the queue name: {e}"),
                })?;
                Ok((msg, queue, notes))
            }))
            .await;
        if let Some(Err(Failure { error, .. })) =
            prepared.iter().find(|p| matches!(p, Err(f) if f.recipient.is_empty()))
        {
            return Err(InjectError::Unavailable(error.clone()));
        }

        // Step 4: one commit for the request. SPEC §1.5: the null queue is not spooled.
        let puts: Vec<SpoolOp> = prepared
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .filter(|(_, queue, _)| queue != NULL_QUEUE)
            .map(|(msg, ..)| SpoolOp::put(msg))
            .collect();
        if !puts.is_empty() {
            match self.reception.spool.commit(puts).await {
                Ok(()) => {}
                Err(SpoolError::Full) => return Err(InjectError::SpoolFull("try again later".into())),
                Err(e) => {
                    tracing::error!(error = %e, "spool write failed; injection refused with 503");
                    return Err(InjectError::Unavailable(format!(
                        "spool write failed: {e}; try again later"
                    )));
                }
            }
        }

        let mut response = InjectV1Response::default();
        let mut ready = Vec::with_capacity(prepared.len());
        for p in prepared {
            match p {
                Ok((msg, queue, notes)) => {
                    self.log_reception(&msg, &queue, &notes);
                    ready.push((msg, queue));
                }
                Err(Failure { recipient, error }) => {
                    response.failed_recipients.push(recipient);
                    response.errors.push(error);
                }
            }
        }
        // Inserts in flight together: the queue manager answers each as it comes.
        let inserted = futures_util::future::join_all(ready.into_iter().map(|(msg, queue)| async move {
            let recipient = msg.recipients[0].clone();
            self.reception.insert(msg, &queue).await.map_err(|reply| (recipient, reply))
        }))
        .await;
        for result in inserted {
            match result {
                Ok(()) => response.success_count += 1,
                Err((recipient, reply)) => {
                    response.errors.push(format!("{recipient}: {} {}", reply.code, reply.text));
                    response.failed_recipients.push(recipient);
                }
            }
        }
        response.fail_count = response.failed_recipients.len();
        Ok(response)
    }

    /// `http_message_generated`; a rejection or handler error fails this recipient only. A
    /// failure with an empty recipient means the policy actor has stopped (the node is stopping).
    async fn run_policy(&self, msg: Message) -> Result<(Message, Vec<RebindNote>), Failure> {
        let recipient = msg.recipients[0].clone();
        let auth = json!({
            "peer": msg.get_meta("received_from").cloned().unwrap_or(Value::Null),
            "method": msg.get_meta("http_auth").cloned().unwrap_or(Value::Null),
        });
        let id = msg.id;
        let ran =
            self.reception.run_event(msg, move |state, msg| state.http_message_generated(msg, &auth)).await;
        ran.map_err(|refusal| {
            let error = match refusal {
                EventRefusal::Rejected { code, text } => {
                    format!("{recipient}: rejected by policy: {code} {text}")
                }
                EventRefusal::Failed(e) => {
                    tracing::error!(%id, error = %e, "http_message_generated failed; recipient not injected");
                    format!("{recipient}: http_message_generated: {e}")
                }
                EventRefusal::Stopped => {
                    return Failure {
                        recipient: String::new(),
                        error: "policy has stopped; try again later".into(),
                    };
                }
            };
            Failure { recipient, error }
        })
    }

    fn log_reception(&self, msg: &Message, queue: &str, notes: &[RebindNote]) {
        let logger = &self.reception.logger;
        let mut record = logger.record(RecordType::Reception, msg, queue);
        let peer = msg.get_meta("received_from").and_then(Value::as_str).unwrap_or_default();
        let addr = peer.parse::<SocketAddr>().map_or_else(|_| peer.to_string(), |a| a.ip().to_string());
        record.peer_address = Some(PeerAddress { name: String::new(), addr });
        logger.log(&record);
        for note in notes {
            logger.rebind(msg, &note.from, &note.to, &note.reason);
        }
    }
}

/// Steps 1 and 2: the request refused whole, or one message (or failure) per recipient, in order.
fn generate(
    reception: &Reception,
    call: &InjectCall,
    max_size: usize,
    max_recipients: usize,
) -> Result<Vec<Generated>, InjectError> {
    let request = request::parse(&call.body)?;
    request::check(&request, max_recipients)?;
    let env = template::environment();
    let templates = template::Templates::compile(&env, &request, max_size)?;
    let attachments = match &request.content {
        Content::Builder(b) => mime::decode_attachments(b)?,
        Content::Raw(_) => Vec::new(),
    };
    let date = Utc::now().to_rfc2822();
    Ok(request
        .recipients
        .iter()
        .enumerate()
        .map(|(n, recipient)| {
            let fail = |error: String| Failure {
                recipient: recipient.email.clone(),
                error: format!("recipients[{n}] {}: {error}", recipient.email),
            };
            let rendered =
                templates.render(&template::context(&request.substitutions, recipient)).map_err(fail)?;
            let id = reception.ids.generate();
            let message_id = format!("{id}@{}", reception.hostname);
            let data = match &request.content {
                Content::Raw(_) => {
                    mime::complete_raw(rendered.get(template::Field::Raw).unwrap_or(""), &message_id, &date)
                }
                Content::Builder(b) => {
                    mime::build(b, &rendered, &attachments, recipient, &message_id).map_err(fail)?
                }
            };
            let mut msg = Message::new(
                id,
                request.envelope_sender.clone(),
                vec![recipient.email.clone()],
                Bytes::from(data),
            );
            set_provenance(&mut msg, reception, call, &request, n);
            Ok(msg)
        })
        .collect())
}

/// The meta SMTP reception sets, with the protocol marked HTTP (KumoMTA's names).
fn set_provenance(
    msg: &mut Message,
    reception: &Reception,
    call: &InjectCall,
    request: &InjectV1Request,
    n: usize,
) {
    for (key, value) in [
        ("received_from", call.peer.to_string()),
        ("received_via", call.local.to_string()),
        ("reception_protocol", "HTTP".to_string()),
        ("hostname", reception.hostname.clone()),
        ("http_auth", call.auth.to_string()),
    ] {
        msg.set_meta(key, Value::String(value));
    }
    let extra = &request.recipients[n].metadata;
    if !extra.is_empty() {
        msg.set_meta("extra", Value::Object(extra.clone()));
    }
}

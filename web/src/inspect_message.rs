//! `GET /api/admin/inspect-message/v1`: one spooled message as KumoMTA's `InspectMessageV1Response`.
//!
//! The spool is the truth for a message wherever it is (waiting, ready, in flight), so this reads
//! it directly: an LMDB read sees a committed snapshot and takes no part in message ownership.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, SecondsFormat, Utc};
use ferry_actors::model::message::{LOG_RECORD_META, is_log_record_meta};
use ferry_actors::model::record::Recipients;
use ferry_actors::model::{Message, MessageId};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::AppState;
use crate::errors::json_error;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.service(inspect_message);
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct InspectMessageQuery {
    /// The spool id: 32 hex digits, as SMTP's `250 … ids=` and the log records give it.
    #[serde(deserialize_with = "message_id")]
    #[param(value_type = String, example = "d7ef132b5d7711eea8c8000c29c33806")]
    id: MessageId,
    /// Also return the message's bytes as `data`.
    #[serde(default, deserialize_with = "want_body")]
    want_body: bool,
}

/// The errors name the query key (serde_urlencoded's own messages do not).
fn message_id<'de, D: Deserializer<'de>>(d: D) -> Result<MessageId, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|e| serde::de::Error::custom(format!("id: {e}")))
}

fn want_body<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|_| serde::de::Error::custom(format!("want_body: expected true or false, got {text:?}")))
}

/// KumoMTA's `InspectMessageV1Response`.
#[derive(Serialize, utoipa::ToSchema)]
struct InspectMessageResponse {
    #[schema(example = "d7ef132b5d7711eea8c8000c29c33806")]
    id: String,
    message: MessageInformation,
}

/// KumoMTA's `MessageInformation`. KumoMTA leaves `due` and `num_attempts` out of this endpoint;
/// Ferry persists both (SPEC D1), so it fills them in.
#[derive(Serialize, utoipa::ToSchema)]
struct MessageInformation {
    /// The envelope sender ("" for the null sender).
    sender: String,
    /// One recipient as a string, several as an array (as in KumoMTA).
    #[schema(value_type = Object, example = "recipient@example.com")]
    recipient: Recipients,
    #[schema(value_type = Object)]
    meta: Map<String, Value>,
    /// The message bytes (lossy UTF-8); only with `want_body=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    /// When the message is next due, as persisted; absent means due as soon as possible
    /// (newly received, or being delivered).
    #[serde(skip_serializing_if = "Option::is_none")]
    due: Option<String>,
    /// Completed delivery attempts.
    num_attempts: u16,
    /// The message's scheduling constraints (X-Schedule / set_scheduling), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    scheduling: Option<Value>,
}

impl MessageInformation {
    fn of(m: Message, want_body: bool) -> Self {
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Nanos, true);
        // A log-hook message's record, kept once as its body, shown as KumoMTA shows it.
        let record = match m.meta_value(LOG_RECORD_META) {
            Some(std::borrow::Cow::Owned(record)) => Some(record),
            _ => None,
        };
        let mut meta = m.meta;
        if let Some(record) = record {
            meta.insert(LOG_RECORD_META.into(), record);
        }
        MessageInformation {
            sender: m.sender,
            recipient: Recipients::from(m.recipients.as_slice()),
            meta,
            data: want_body.then(|| String::from_utf8_lossy(&m.data).into_owned()),
            due: m.due.map(ts),
            num_attempts: m.num_attempts,
            scheduling: m.schedule.as_ref().map(|s| s.to_json()),
        }
    }
}

#[utoipa::path(tag = "admin", params(InspectMessageQuery), responses((status = 200, description = "The message's envelope, meta and schedule (KumoMTA's InspectMessageV1Response)", body = InspectMessageResponse), (status = 400, description = "Bad query: the error names the key", body = crate::errors::ErrorBody), (status = 404, description = "No message with this id in the spool", body = crate::errors::ErrorBody), (status = 403, description = "Not a trusted host and no valid bearer token")))]
#[get("/api/admin/inspect-message/v1")]
async fn inspect_message(state: web::Data<AppState>, q: web::Query<InspectMessageQuery>) -> HttpResponse {
    let InspectMessageQuery { id, want_body } = q.into_inner();
    let spool = state.services.spool;
    // A body can be megabytes: read off the async workers.
    let loaded = web::block(move || {
        if want_body {
            return spool.load(&id);
        }
        match spool.load_meta(&id)? {
            // Its log_record meta is its body (small): see Message::meta_value.
            Some(meta) if is_log_record_meta(&meta.meta) => spool.load(&id),
            meta => Ok(meta.map(|meta| Message::from_spool(id, meta, Default::default()))),
        }
    })
    .await;
    match loaded {
        Ok(Ok(Some(m))) => HttpResponse::Ok().json(InspectMessageResponse {
            id: id.to_string(),
            message: MessageInformation::of(m, want_body),
        }),
        Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, format!("no message {id} in the spool")),
        Ok(Err(e)) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

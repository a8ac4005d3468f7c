//! Which message a feedback report or bounce is about. Ferry stamps no extra header on outbound
//! mail: the `Received` trace header it adds at reception (`by <host> (Ferry) with ESMTP id
//! <id>`) already names the message and travels with it, and reports usually return the
//! original's headers. The topmost such header is the last Ferry hop, the one that sent the
//! message out. The original `Message-ID` is kept too, for mail whose trace headers were cut.

use super::MessageId;

/// What a report says about the message it reports on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The Ferry id of the original, from its topmost Ferry `Received` header.
    pub ferry_id: Option<MessageId>,
    /// The original's `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
}

impl Origin {
    /// Read the header section of a returned original (a whole message or just its headers).
    pub fn of(original: &[u8]) -> Origin {
        let head = match original.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => &original[..end + 2],
            None => match original.windows(2).position(|w| w == b"\n\n") {
                Some(end) => &original[..end + 1],
                None => original,
            },
        };
        let mut origin = Origin::default();
        for (name, value) in super::report_mime::field_blocks(head).into_iter().next().unwrap_or_default() {
            if name.eq_ignore_ascii_case("Received") && origin.ferry_id.is_none() {
                origin.ferry_id = ferry_id(&value);
            } else if name.eq_ignore_ascii_case("Message-ID") && origin.message_id.is_none() {
                let id = value.trim().trim_start_matches('<').trim_end_matches('>').trim();
                if !id.is_empty() {
                    origin.message_id = Some(id.to_string());
                }
            }
        }
        origin
    }
}

/// The id in a `Received` value Ferry wrote: `... (Ferry) with <protocol> id <32 hex>...`.
fn ferry_id(received: &str) -> Option<MessageId> {
    let (_, after) = received.split_once("(Ferry) with ")?;
    let (_, rest) = after.split_once(" id ")?;
    rest.get(..32)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0d2d1ee0b8a611f0a8f40242ac120002";

    #[test]
    fn the_topmost_ferry_received_header_names_the_original() {
        let headers = format!(
            "Received: from mx.other (1.2.3.4) by inbox.example with ESMTP id 77;\r\n\tMon, 1 Dec 2026 10:00:00 +0000\r\nReceived: from client (127.0.0.1)\r\n\tby relay.test (Ferry) with ESMTPS id {ID}\r\n\tfor <a@b>;\r\n\tMon, 1 Dec 2026 09:59:00 +0000\r\nReceived: from x by older (Ferry) with ESMTP id 1d98076abbbc11ed940250ebf67f93bd; now\r\nMessage-ID: <abc@sender.example>\r\n\r\nbody with Received: by x (Ferry) with ESMTP id 2d98076abbbc11ed940250ebf67f93bd\r\n"
        );
        let o = Origin::of(headers.as_bytes());
        assert_eq!(o.ferry_id.map(|i| i.to_string()).as_deref(), Some(ID));
        assert_eq!(o.message_id.as_deref(), Some("abc@sender.example"));
    }

    #[test]
    fn without_a_ferry_header_only_the_message_id_is_known() {
        let o = Origin::of(b"Received: by mx (Postfix) with ESMTP id 4Z1;\n\tdate\nMessage-Id: <x@y>\n");
        assert_eq!(o, Origin { ferry_id: None, message_id: Some("x@y".into()) });
        let forged = format!("Received: by x (Ferry) with ESMTP id {}\r\n", "z".repeat(32));
        assert_eq!(Origin::of(forged.as_bytes()).ferry_id, None, "not a message id");
        assert_eq!(Origin::of(b""), Origin::default());
    }
}

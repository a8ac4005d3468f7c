//! The header half of the Message object: reading, adding and removing headers, address
//! headers, and DKIM signing (which adds a header). The rules are in `model::headers`.

use bytes::Bytes;
use mlua::{UserDataMethods, UserDataRef, Value};

use super::address_header::LuaAddressHeader;
use super::dkim::LuaSigner;
use super::kumo::runtime_error;
use super::lua_message::LuaMessage;
use crate::model::{address_header, headers};

fn address_header(data: &[u8], name: &str) -> Option<LuaAddressHeader> {
    headers::first_named(data, name).map(|v| LuaAddressHeader(address_header::parse(&v)))
}

pub fn add_methods<M: UserDataMethods<LuaMessage>>(methods: &mut M) {
    methods.add_method("get_first_named_header_value", |_, m, name: String| {
        Ok(headers::first_named(&m.0.data, &name).map(|v| headers::decode_value(&v)))
    });
    methods.add_method("get_all_named_header_values", |_, m, name: String| {
        Ok(headers::all_named(&m.0.data, &name).iter().map(|v| headers::decode_value(v)).collect::<Vec<_>>())
    });
    methods.add_method("get_all_headers", |lua, m, ()| {
        lua.create_sequence_from(
            headers::headers(&m.0.data).into_iter().map(|h| vec![h.name, headers::decode_value(&h.value)]),
        )
    });
    methods.add_method_mut("append_header", |_, m, (name, value): (String, String)| {
        m.0.data = Bytes::from(headers::append(&m.0.data, &name, &value));
        Ok(())
    });
    methods.add_method_mut("prepend_header", |_, m, (name, value): (String, String)| {
        m.0.data = Bytes::from(headers::prepend(&m.0.data, &name, &value));
        Ok(())
    });
    methods.add_method_mut("remove_all_named_headers", |_, m, name: String| {
        m.0.data = Bytes::from(headers::remove_all(&m.0.data, &name));
        Ok(())
    });
    // No names: every X-* header; names: just those (X- or not, as KumoMTA does).
    methods.add_method_mut("remove_x_headers", |_, m, names: Option<Vec<String>>| {
        m.0.data = Bytes::from(match names {
            None => headers::remove_where(&m.0.data, headers::is_x_header),
            Some(names) => {
                headers::remove_where(&m.0.data, |n| names.iter().any(|w| w.eq_ignore_ascii_case(n)))
            }
        });
        Ok(())
    });
    methods.add_method_mut("import_x_headers", |_, m, names: Option<Vec<String>>| {
        // SPEC §8: header name lower-cased with '-' -> '_'; no names = every X-* header; last wins.
        for h in headers::headers(&m.0.data) {
            let wanted = match &names {
                Some(list) => list.iter().any(|n| n.eq_ignore_ascii_case(&h.name)),
                None => headers::is_x_header(&h.name),
            };
            if wanted {
                let key = h.name.to_ascii_lowercase().replace('-', "_");
                m.0.set_meta(key, serde_json::Value::String(h.value));
            }
        }
        Ok(())
    });
    methods.add_method("from_header", |_, m, ()| Ok(address_header(&m.0.data, "From")));
    methods.add_method("to_header", |_, m, ()| Ok(address_header(&m.0.data, "To")));
    methods.add_method("get_address_header", |_, m, name: String| Ok(address_header(&m.0.data, &name)));
    // Prepends the DKIM-Signature; a later signer signs over it, so signatures nest.
    methods.add_method_mut("dkim_sign", |lua, m, signer: Value| {
        let signer = match signer {
            Value::UserData(ud) => ud.borrow::<LuaSigner>().ok(),
            _ => None,
        };
        let signer: UserDataRef<LuaSigner> =
            signer.ok_or_else(|| runtime_error(lua, "dkim_sign expects a signer from kumo.dkim.*_signer"))?;
        let header = signer.0.sign(&m.0.data).map_err(|e| runtime_error(lua, e))?;
        let mut data = Vec::with_capacity(header.len() + m.0.data.len());
        data.extend_from_slice(header.as_bytes());
        data.extend_from_slice(&m.0.data);
        m.0.data = Bytes::from(data);
        Ok(())
    });
}

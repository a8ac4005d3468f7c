//! KumoMTA's AddressHeader object (`msg:from_header()`, `msg:to_header()`,
//! `msg:get_address_header(name)`): `.list` of mailboxes, and `.email`, `.user`, `.domain`,
//! `.name` when the header holds exactly one. `tostring` gives JSON.

use mlua::{MetaMethod, UserData, UserDataFields, UserDataMethods};

use crate::model::address_header::{Mailbox, single};

pub struct LuaAddressHeader(pub Vec<Mailbox>);

/// One entry of `.list`.
pub struct LuaMailbox(pub Mailbox);

fn json<T: serde::Serialize>(v: &T) -> mlua::Result<String> {
    serde_json::to_string(v).map_err(mlua::Error::external)
}

impl UserData for LuaMailbox {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("email", |_, m| Ok(m.0.address.clone()));
        fields.add_field_method_get("name", |_, m| Ok(m.0.name.clone()));
        fields.add_field_method_get("user", |_, m| Ok(m.0.user()));
        fields.add_field_method_get("domain", |_, m| Ok(m.0.domain()));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, m, ()| json(&m.0));
    }
}

impl UserData for LuaAddressHeader {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fn one(h: &LuaAddressHeader) -> mlua::Result<&Mailbox> {
            single(&h.0).map_err(mlua::Error::runtime)
        }
        fields.add_field_method_get("email", |_, h| Ok(one(h)?.address.clone()));
        fields.add_field_method_get("name", |_, h| Ok(one(h)?.name.clone()));
        fields.add_field_method_get("user", |_, h| Ok(one(h)?.user()));
        fields.add_field_method_get("domain", |_, h| Ok(one(h)?.domain()));
        fields.add_field_method_get("list", |lua, h| {
            lua.create_sequence_from(h.0.iter().cloned().map(LuaMailbox))
        });
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, h, ()| json(&h.0));
    }
}

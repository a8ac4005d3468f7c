//! `xfer_message_received(msg, auth_info)` (SPEC §4.8): a Single event on the receiving node,
//! after `restore_info` and before the save; it may rewrite meta, e.g. to route locally.

use mlua::MultiValue;

use super::convert::json_to_lua;
use super::error::PolicyError;
use super::state::PolicyState;
use crate::model::Message;

impl PolicyState {
    pub fn xfer_message_received(
        &self,
        msg: Message,
        auth_info: &serde_json::Value,
    ) -> (Message, Result<(), PolicyError>) {
        self.run_message_chain("xfer_message_received", msg, |lua| {
            Ok(MultiValue::from_vec(vec![json_to_lua(lua, auth_info)?]))
        })
    }
}

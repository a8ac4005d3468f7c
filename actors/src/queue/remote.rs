//! Directives from peers (`[cluster]`): applied through the same functions as local requests,
//! and not announced again.

use actix::prelude::*;

use super::admin::{remove_bounce, start_bounce};
use super::manager::{QueueManager, add_suspension, remove_suspension};
use crate::cluster::{ApplyDirective, CancelDirective};
use crate::model::cluster::{Directive, DirectiveKind};

impl Handler<ApplyDirective> for QueueManager {
    type Result = ();
    fn handle(&mut self, ApplyDirective(d): ApplyDirective, ctx: &mut Context<Self>) {
        let services = self.services_handle();
        match d {
            Directive::Suspend(s) => add_suspension(&services, s),
            Directive::Bounce(b) => start_bounce(services, ctx.address(), b),
            Directive::SuspendReadyQ(s) => {
                services.delivery.do_send(ApplyDirective(Directive::SuspendReadyQ(s)))
            }
        }
    }
}

impl Handler<CancelDirective> for QueueManager {
    type Result = ();
    fn handle(&mut self, CancelDirective((kind, id)): CancelDirective, _: &mut Context<Self>) {
        let services = self.services_handle();
        match kind {
            DirectiveKind::Suspend => {
                remove_suspension(&services, &id);
            }
            DirectiveKind::Bounce => {
                remove_bounce(&services, &id);
            }
            DirectiveKind::SuspendReadyQ => services.delivery.do_send(CancelDirective((kind, id))),
        }
    }
}

//! `resolve-egress-path`: which queue config, egress pool, source, ready queue and path config a
//! destination would get, asked of the policy the way delivery asks it (`get_queue_config`, then
//! `get_egress_pool` / `get_egress_source`, then `get_egress_path_config`), without sending
//! anything. One call on the policy's config lane.

use crate::delivery::site_for;
use crate::model::egress::{EgressPool, WeightedRoundRobin};
use crate::model::egress_path::EgressPathConfig;
use crate::model::queue_config::QueueConfig;
use crate::model::queue_name::{self, QueueNameParts};
use crate::policy::{Lane, PolicyPool};

/// A destination as a scheduled queue name is made of; `source` as KumoMTA's query takes it.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    pub domain: String,
    pub tenant: Option<String>,
    pub campaign: Option<String>,
    pub routing_domain: Option<String>,
    /// None: the source the pool's rotation picks first (for the default pool, "unspecified",
    /// which is KumoMTA's default here).
    pub source: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ResolvedPath {
    /// The scheduled queue the destination's messages would wait in.
    pub scheduled_queue: String,
    pub queue_config: QueueConfig,
    pub egress_pool: EgressPool,
    pub source: String,
    /// `<source>-><site>@<protocol>`, the name inspect-ready-q and suspend-ready-q take.
    pub ready_queue: String,
    pub path: EgressPathConfig,
}

/// Errors name the policy step that failed.
pub async fn resolve(policy: &PolicyPool, dest: Destination) -> Result<ResolvedPath, String> {
    policy
        .call(Lane::Config, move |state| {
            let parts = QueueNameParts {
                campaign: dest.campaign.filter(|s| !s.is_empty()),
                tenant: dest.tenant.filter(|s| !s.is_empty()),
                domain: dest.domain,
                routing_domain: dest.routing_domain.filter(|s| !s.is_empty()),
            };
            let scheduled_queue = queue_name::format(
                parts.campaign.as_deref(),
                parts.tenant.as_deref(),
                &parts.domain,
                parts.routing_domain.as_deref(),
            );
            let queue_config =
                state.get_queue_config(&parts).map_err(|e| format!("get_queue_config: {e}"))?;
            let pool_name = &queue_config.egress_pool;
            let egress_pool = state
                .get_egress_pool(pool_name)
                .map_err(|e| format!("get_egress_pool({pool_name:?}): {e}"))?;
            let source = match dest.source.filter(|s| !s.is_empty()) {
                Some(name) => name,
                None => {
                    let first = WeightedRoundRobin::new(&egress_pool).pick().ok_or_else(|| {
                        format!("egress pool {pool_name:?} has no source with a weight above 0")
                    })?;
                    egress_pool.entries[first].name.clone()
                }
            };
            state.get_egress_source(&source).map_err(|e| format!("get_egress_source({source:?}): {e}"))?;
            let (site, _) = site_for(&scheduled_queue, &queue_config);
            let routing_domain = parts.routing_domain.as_deref().unwrap_or(&parts.domain);
            let path = state
                .get_egress_path_config(routing_domain, &source, &site)
                .map_err(|e| format!("get_egress_path_config: {e}"))?;
            Ok(ResolvedPath {
                ready_queue: format!("{source}->{site}"),
                scheduled_queue,
                queue_config,
                egress_pool,
                source,
                path,
            })
        })
        .await
        .map_err(|e| e.to_string())?
}

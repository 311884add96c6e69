//! Every operator of a query yields between batches, so that a query can
//! be stopped.
//!
//! A task that never returns `Pending` cannot be aborted: tokio only stops
//! a task at an await point. DataFusion's own `EnsureCooperative` rule wraps
//! the leaves that do not cooperate, but operators that loop over their
//! inputs in one poll (a cross join against a generated series feeding an
//! aggregate) can still run for minutes without yielding. This rule, last
//! in the physical optimizer, wraps every operator in a `CooperativeExec`:
//! each batch it passes on spends tokio's cooperative budget, so the task
//! yields every few batches and an abort (on `query.timeout`, or when the
//! client goes away) takes effect at once, giving back the thread and the
//! memory.

use std::sync::Arc;

use deltalake::datafusion::common::Result;
use deltalake::datafusion::common::config::ConfigOptions;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::physical_optimizer::PhysicalOptimizerRule;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::coop::CooperativeExec;

/// Wraps every operator of a plan in a [`CooperativeExec`].
#[derive(Debug, Default)]
pub(crate) struct YieldEverywhere;

impl PhysicalOptimizerRule for YieldEverywhere {
    fn name(&self) -> &str {
        "ferry_yield_everywhere"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.downcast_ref::<CooperativeExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

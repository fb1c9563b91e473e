//! Cases 6, 7 and 11: other webhooks, the namespace cache, API server restarts, injector down.

use anyhow::Result;

use crate::Env;

pub fn fresh_namespace(_env: &Env) -> Result<()> {
    anyhow::bail!("not written yet")
}

pub async fn reinvocation_after_later_webhook(_env: &Env) -> Result<()> {
    anyhow::bail!("not written yet")
}

pub async fn apiserver_restart(_env: &mut Env) -> Result<()> {
    anyhow::bail!("not written yet")
}

pub fn injector_down(_env: &mut Env) -> Result<()> {
    anyhow::bail!("not written yet")
}

//! TEMPORARY while the CNI and bridge crates land.
use crate::container::EngineOptions;
use crate::network::{AttachArgs, Attacher, Attachers, Attachment, NetError};
use crate::networks::NetworkDef;
use std::path::Path;

#[derive(Debug)]
pub struct Plugged;
impl Plugged {
    pub fn new(_o: &EngineOptions) -> Plugged {
        Plugged
    }
}
impl Attacher for Plugged {
    fn attach(&self, a: &AttachArgs<'_>) -> Result<Attachment, NetError> {
        Err(NetError::Attach {
            network: a.net.name.clone(),
            message: "TEMP".into(),
        })
    }
    fn detach(
        &self,
        _: Option<&NetworkDef>,
        _: &str,
        _: &Path,
        _: &Attachment,
    ) -> Result<(), NetError> {
        Ok(())
    }
    fn remove_network(&self, _: &NetworkDef) -> Result<(), NetError> {
        Ok(())
    }
    fn remove_leaked(&self, _: &dyn Fn(&str) -> bool) -> Result<Vec<String>, NetError> {
        Ok(vec![])
    }
}
impl Attachers for Plugged {
    fn for_backend(&self, _: &str) -> &dyn Attacher {
        self
    }
}

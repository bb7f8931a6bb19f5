//! berth's CNI executor: loads network configurations and runs CNI plugins as
//! the CNI spec (1.0.0 and 1.1.0) and libcni do, so that the reference plugins
//! and any third-party plugin following the spec work unchanged.
//!
//! The crate knows nothing of containers: a caller names a network
//! ([`NetworkConfigList`]) and an attachment ([`RuntimeConf`]: container ID,
//! netns path, interface name, CNI_ARGS, capability args) and calls
//! [`Cni::add`], [`Cni::check`], [`Cni::del`], [`Cni::gc`], [`Cni::status`].
//!
//! Invariants:
//! - ADD is all or nothing: when a plugin fails, the whole chain is DELeted
//!   (best effort) and nothing is cached.
//! - A successful ADD is cached in libcni's layout (see [`cache`]); DEL uses
//!   the cached result as `prevResult` and drops the entry only when every
//!   plugin succeeded, so a failed DEL can be retried, also from the cache
//!   alone ([`Cni::del_cached`]) after the config file is gone.
//! - Each plugin call is bounded by [`Cni::timeout`]; see [`exec`].

pub mod cache;
pub mod config;
pub mod error;
mod exec;
pub mod result;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use cache::CachedAttachment;
pub use config::{find_network, load_dir, NetworkConfigList};
pub use error::CniError;
pub use result::{CniResult, Dns, Interface, IpConfig, Route, VersionInfo};

use exec::CniEnv;

/// Where the reference plugins live on Debian and most distributions.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// libcni's default cache dir.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";
/// The default time a single plugin call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One attachment of a container to a network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConf {
    pub container_id: String,
    /// The network namespace path (CNI_NETNS).
    pub netns: PathBuf,
    /// The interface name inside the netns (CNI_IFNAME).
    pub ifname: String,
    /// CNI_ARGS, passed as `K=V;K2=V2`.
    pub args: Vec<(String, String)>,
    /// Capability args (portMappings, bandwidth, ips, mac, dns, ...); each
    /// plugin gets in `runtimeConfig` only those it declares in `capabilities`.
    pub capability_args: Map<String, Value>,
}

/// An attachment GC must keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The executor: where plugins are found, where results are cached.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Searched in order for a plugin binary; also CNI_PATH.
    pub plugin_dirs: Vec<PathBuf>,
    /// Holds `results/` (libcni's layout).
    pub cache_dir: PathBuf,
    /// The most one plugin call may take; the plugin's process group is
    /// killed when it is exceeded.
    pub timeout: Duration,
}

/// The stdin of a plugin in a chain: its conf with `name` and `cniVersion`
/// from the list, `prevResult` if any, and `runtimeConfig` holding only the
/// capability args it declares.
pub fn plugin_config(
    net: &NetworkConfigList,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Map<String, Value> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
        let rc: Map<String, Value> = caps
            .iter()
            .filter(|(_, on)| on.as_bool() == Some(true))
            .filter_map(|(k, _)| capability_args.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    conf
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

impl Cni {
    /// An executor with the default 30 s timeout.
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        Cni {
            plugin_dirs,
            cache_dir,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn validate(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), CniError> {
        config::validate_name("network name", &net.name)
            .map_err(|r| CniError::invalid(format!("network {:?}", net.name), r))?;
        config::validate_name("container ID", &rt.container_id)
            .map_err(|r| CniError::invalid("runtime config", r))?;
        config::validate_ifname(&rt.ifname).map_err(|r| CniError::invalid("runtime config", r))?;
        for (k, v) in &rt.args {
            if k.is_empty() || k.contains(['=', ';']) || v.contains(';') {
                return Err(CniError::invalid(
                    "runtime config",
                    format!("CNI_ARGS {k:?}={v:?}: the key must be non-empty without '=' or ';', the value without ';'"),
                ));
            }
        }
        Ok(())
    }

    fn env(&self, command: &str, rt: Option<&RuntimeConf>) -> CniEnv {
        let mut env = CniEnv {
            command: command.to_string(),
            path: exec::format_path(&self.plugin_dirs),
            ..Default::default()
        };
        if let Some(rt) = rt {
            env.container_id = rt.container_id.clone();
            env.netns = rt.netns.display().to_string();
            env.ifname = rt.ifname.clone();
            env.args = exec::format_args(&rt.args);
        }
        env
    }

    /// Runs one plugin of `net` and returns its stdout.
    fn invoke(
        &self,
        net_name: &str,
        plugin: &str,
        env: &CniEnv,
        conf: &Value,
    ) -> Result<Vec<u8>, CniError> {
        let path = exec::find_plugin(&self.plugin_dirs, plugin)?;
        let stdin = serde_json::to_vec(conf)
            .map_err(|e| CniError::invalid(format!("plugin {plugin:?} config"), e.to_string()))?;
        exec::run(&path, plugin, net_name, env, &stdin, self.timeout)
    }

    /// ADD: runs the chain in order, each plugin getting the previous one's
    /// result. On failure the whole chain is DELeted (best effort) and the ADD
    /// error returned; on success the final result is cached and returned.
    pub fn add(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<CniResult, CniError> {
        self.validate(net, rt)?;
        let env = self.env("ADD", Some(rt));
        let mut prev: Option<Value> = None;
        let mut last: Option<CniResult> = None;
        for plugin in &net.plugins {
            let ty = plugin_type(plugin);
            let conf = plugin_config(net, plugin, prev.as_ref(), &rt.capability_args);
            let step = self
                .invoke(&net.name, ty, &env, &Value::Object(conf))
                .and_then(|out| CniResult::from_slice(ty, &out));
            match step {
                Ok(res) => {
                    prev = Some(res.raw.clone());
                    last = Some(res);
                }
                Err(e) => {
                    self.rollback(net, rt, prev.as_ref());
                    return Err(e);
                }
            }
        }
        let Some(result) = last else {
            return Err(CniError::invalid(
                format!("network {:?}", net.name),
                "no plugins",
            ));
        };
        let entry = CachedAttachment {
            network: net.name.clone(),
            container_id: rt.container_id.clone(),
            ifname: rt.ifname.clone(),
            netns: rt.netns.display().to_string(),
            args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            config: net.bytes.clone(),
            result: Some(result.raw.clone()),
        };
        if let Err(e) = cache::write(&self.cache_dir, &entry) {
            self.rollback(net, rt, prev.as_ref());
            return Err(e);
        }
        Ok(result)
    }

    /// Undoes a failed ADD: DEL of every plugin in reverse, errors logged.
    fn rollback(&self, net: &NetworkConfigList, rt: &RuntimeConf, prev: Option<&Value>) {
        tracing::info!(network = %net.name, container = %rt.container_id, "CNI ADD failed, deleting the chain");
        if let Err(e) = self.del_chain(net, rt, prev) {
            tracing::warn!(network = %net.name, container = %rt.container_id, error = %e, "CNI DEL after a failed ADD");
        }
        if let Err(e) = cache::remove(&self.cache_dir, &net.name, &rt.container_id, &rt.ifname) {
            tracing::warn!(error = %e, "removing CNI cache entry after a failed ADD");
        }
    }

    /// DEL of every plugin in reverse order; all are tried, errors collected.
    fn del_chain(
        &self,
        net: &NetworkConfigList,
        rt: &RuntimeConf,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let env = self.env("DEL", Some(rt));
        let mut errs = Vec::new();
        for plugin in net.plugins.iter().rev() {
            let ty = plugin_type(plugin);
            let conf = plugin_config(net, plugin, prev, &rt.capability_args);
            if let Err(e) = self.invoke(&net.name, ty, &env, &Value::Object(conf)) {
                errs.push(e);
            }
        }
        join_errors(errs)
    }

    /// DEL: runs the chain in reverse with the cached result (in the list's
    /// version, as libcni converts it) as `prevResult` (none if nothing is
    /// cached). Every plugin is tried; the cache entry is
    /// removed only when all succeeded.
    pub fn del(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), CniError> {
        self.validate(net, rt)?;
        let prev = if config::version_at_least(&net.cni_version, "0.4.0") {
            match cache::read(&self.cache_dir, &net.name, &rt.container_id, &rt.ifname) {
                Ok(entry) => entry
                    .and_then(|e| e.result)
                    .map(|r| result::as_version(&r, &net.cni_version)),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring unreadable CNI cache entry for DEL");
                    None
                }
            }
        } else {
            None
        };
        self.del_chain(net, rt, prev.as_ref())?;
        cache::remove(&self.cache_dir, &net.name, &rt.container_id, &rt.ifname)
    }

    /// DEL from the cache alone (config bytes, netns, args, capability args),
    /// for when the network's config file is gone. Ok if nothing is cached.
    pub fn del_cached(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), CniError> {
        config::validate_name("network name", network)
            .map_err(|r| CniError::invalid("cache lookup", r))?;
        config::validate_name("container ID", container_id)
            .map_err(|r| CniError::invalid("cache lookup", r))?;
        config::validate_ifname(ifname).map_err(|r| CniError::invalid("cache lookup", r))?;
        let Some(entry) = cache::read(&self.cache_dir, network, container_id, ifname)? else {
            return Ok(());
        };
        let net = NetworkConfigList::parse(&entry.config)
            .or_else(|_| NetworkConfigList::from_single_conf(&entry.config))
            .map_err(|e| {
                CniError::invalid(
                    format!("cached config of network {network:?} for container {container_id:?}"),
                    e.to_string(),
                )
            })?;
        if net.name != network {
            return Err(CniError::invalid(
                format!("cached config of network {network:?}"),
                format!("it names network {:?}", net.name),
            ));
        }
        let rt = RuntimeConf {
            container_id: entry.container_id,
            netns: PathBuf::from(entry.netns),
            ifname: entry.ifname,
            args: entry.args,
            capability_args: entry.capability_args,
        };
        self.del(&net, &rt)
    }

    /// CHECK (spec >= 0.4.0): runs the chain in order with the cached result
    /// as `prevResult`. A no-op when the list has `disableCheck`.
    pub fn check(&self, net: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), CniError> {
        self.validate(net, rt)?;
        if !config::version_at_least(&net.cni_version, "0.4.0") {
            return Err(CniError::invalid(
                format!("network {:?}", net.name),
                format!(
                    "cniVersion {} does not support CHECK (needs 0.4.0 or later)",
                    net.cni_version
                ),
            ));
        }
        if net.disable_check {
            return Ok(());
        }
        let entry = cache::read(&self.cache_dir, &net.name, &rt.container_id, &rt.ifname)?;
        let Some(prev) = entry
            .and_then(|e| e.result)
            .map(|r| result::as_version(&r, &net.cni_version))
        else {
            return Err(CniError::NotAttached {
                network: net.name.clone(),
                container_id: rt.container_id.clone(),
                ifname: rt.ifname.clone(),
            });
        };
        let env = self.env("CHECK", Some(rt));
        for plugin in &net.plugins {
            let conf = plugin_config(net, plugin, Some(&prev), &rt.capability_args);
            self.invoke(&net.name, plugin_type(plugin), &env, &Value::Object(conf))?;
        }
        Ok(())
    }

    /// GC: DELs every cached attachment of this network not in `valid` (what
    /// libcni does for every version), then, for cniVersion >= 1.1.0, calls
    /// each plugin with CNI_COMMAND=GC and `cni.dev/valid-attachments`.
    /// A no-op when the list has `disableGC`. All steps run; errors are joined.
    pub fn gc(&self, net: &NetworkConfigList, valid: &[GcAttachment]) -> Result<(), CniError> {
        if net.disable_gc {
            return Ok(());
        }
        let mut errs = Vec::new();
        for a in cache::list(&self.cache_dir)? {
            if a.network != net.name
                || valid
                    .iter()
                    .any(|v| v.container_id == a.container_id && v.ifname == a.ifname)
            {
                continue;
            }
            tracing::info!(network = %net.name, container = %a.container_id, ifname = %a.ifname, "CNI GC: deleting stale attachment");
            let rt = RuntimeConf {
                container_id: a.container_id,
                netns: PathBuf::from(a.netns),
                ifname: a.ifname,
                args: a.args,
                capability_args: a.capability_args,
            };
            if let Err(e) = self.del(net, &rt) {
                errs.push(e);
            }
        }
        if config::version_at_least(&net.cni_version, "1.1.0") {
            let env = self.env("GC", None);
            let valid = serde_json::to_value(valid).unwrap_or(Value::Array(Vec::new()));
            for plugin in &net.plugins {
                let mut conf = plugin_config(net, plugin, None, &Map::new());
                conf.insert("cni.dev/valid-attachments".into(), valid.clone());
                // The 1.1.0 spec text first called the key this; libcni sends both.
                conf.insert("cni.dev/attachments".into(), valid.clone());
                if let Err(e) =
                    self.invoke(&net.name, plugin_type(plugin), &env, &Value::Object(conf))
                {
                    errs.push(e);
                }
            }
        }
        join_errors(errs)
    }

    /// STATUS (1.1.0): asks each plugin whether it is ready for ADDs. For
    /// lists older than 1.1.0 there is no STATUS: Ok without calling anything.
    pub fn status(&self, net: &NetworkConfigList) -> Result<(), CniError> {
        if !config::version_at_least(&net.cni_version, "1.1.0") {
            return Ok(());
        }
        let env = self.env("STATUS", None);
        for plugin in &net.plugins {
            let conf = plugin_config(net, plugin, None, &Map::new());
            self.invoke(&net.name, plugin_type(plugin), &env, &Value::Object(conf))?;
        }
        Ok(())
    }

    /// VERSION: the spec versions a plugin supports.
    pub fn version(&self, plugin_type: &str) -> Result<VersionInfo, CniError> {
        let mut env = self.env("VERSION", None);
        // Plugins built on old skel versions insist on these being set.
        env.netns = "dummy".into();
        env.ifname = "dummy".into();
        let out = self.invoke(
            "",
            plugin_type,
            &env,
            &json!({ "cniVersion": config::CURRENT_VERSION }),
        )?;
        serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
            plugin: plugin_type.to_string(),
            reason: format!("VERSION answer is not {{cniVersion, supportedVersions}}: {e}"),
        })
    }

    /// The cache entry of one attachment, if any.
    pub fn cached(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CachedAttachment>, CniError> {
        config::validate_name("network name", network)
            .map_err(|r| CniError::invalid("cache lookup", r))?;
        config::validate_name("container ID", container_id)
            .map_err(|r| CniError::invalid("cache lookup", r))?;
        config::validate_ifname(ifname).map_err(|r| CniError::invalid("cache lookup", r))?;
        cache::read(&self.cache_dir, network, container_id, ifname)
    }

    /// Every cached attachment (of every network).
    pub fn cached_attachments(&self) -> Result<Vec<CachedAttachment>, CniError> {
        cache::list(&self.cache_dir)
    }
}

fn join_errors(mut errs: Vec<CniError>) -> Result<(), CniError> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(CniError::Multiple(errs)),
    }
}

#[cfg(test)]
mod tests;

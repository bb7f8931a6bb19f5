//! CRI's RuntimeService. What berth serves today: `Version`, `Status`,
//! `RuntimeConfig` and `UpdateRuntimeConfig`. Every pod, container, stats,
//! events and checkpoint call answers `Unimplemented`, naming the part of
//! issue 14 that brings it: honest work in progress, never a fake answer.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::proto::runtime_service_server::RuntimeService;
use crate::proto::{self};
use crate::server::State;
use crate::{RUNTIME_API_VERSION, RUNTIME_NAME};

/// The RuntimeService.
#[derive(Debug, Clone)]
pub struct RuntimeSvc {
    pub(crate) state: Arc<State>,
}

/// The server-streaming answer type of the calls not served yet.
pub type Unsupported<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The items of issue 14 that bring the calls berth does not serve yet.
#[derive(Debug, Clone, Copy)]
enum Item {
    Pods,
    Containers,
    Streaming,
    Stats,
    Events,
    Checkpoint,
}

impl Item {
    fn describe(self) -> &'static str {
        match self {
            Item::Pods => "its \"Pods\" item (pod sandboxes held by berth's pause process, CNI networking)",
            Item::Containers => "its \"Containers\" item (containers in pods, through the engine's service API)",
            Item::Streaming => "its \"Exec, Attach and PortForward\" item (streaming URLs; the streaming server itself is the next issue)",
            Item::Stats => "its \"ContainerStats ... ListPodSandboxMetrics\" item (cgroup and network stats)",
            Item::Events => "its \"GetContainerEvents\" item (the evented PLEG stream)",
            Item::Checkpoint => "its \"CheckpointContainer\" item (CRIU, which cannot checkpoint on this kernel)",
        }
    }
}

/// The `Unimplemented` status of `rpc`.
fn not_yet(rpc: &str, item: Item) -> Status {
    Status::unimplemented(format!(
        "berth does not serve {rpc} yet: it comes with issue 14, {}",
        item.describe()
    ))
}

/// Checks a pod CIDR list as kubelet sends it (`CIDR[,CIDR]`).
pub(crate) fn check_pod_cidr(s: &str) -> Result<(), String> {
    for part in s.split(',') {
        let part = part.trim();
        let (ip, len) = part
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {part:?} has no /PREFIX"))?;
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| format!("pod CIDR {part:?}: {ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        match len.parse::<u8>() {
            Ok(n) if n <= max => {}
            _ => {
                return Err(format!(
                    "pod CIDR {part:?}: prefix length must be 0..={max}"
                ))
            }
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl RuntimeService for RuntimeSvc {
    async fn version(
        &self,
        _req: Request<proto::VersionRequest>,
    ) -> Result<Response<proto::VersionResponse>, Status> {
        Ok(Response::new(proto::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        req: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let verbose = req.into_inner().verbose;
        let state = self.state.clone();
        let resp = tokio::task::spawn_blocking(move || state.status(verbose))
            .await
            .map_err(|e| crate::errors::join_status("status", e))?;
        Ok(Response::new(resp))
    }

    async fn runtime_config(
        &self,
        _req: Request<proto::RuntimeConfigRequest>,
    ) -> Result<Response<proto::RuntimeConfigResponse>, Status> {
        let driver = match self.state.config.cgroup_driver {
            crate::config::CgroupDriver::Cgroupfs => proto::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(proto::RuntimeConfigResponse {
            linux: Some(proto::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<proto::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<proto::UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return Ok(Response::new(proto::UpdateRuntimeConfigResponse {}));
        }
        check_pod_cidr(&cidr).map_err(Status::invalid_argument)?;
        let old = std::mem::replace(
            &mut *self.state.pod_cidr.lock().expect("pod CIDR lock"),
            cidr.clone(),
        );
        if old != cidr {
            info!(pod_cidr = %cidr, previous = %old, "pod CIDR updated");
        }
        Ok(Response::new(proto::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        _req: Request<proto::RunPodSandboxRequest>,
    ) -> Result<Response<proto::RunPodSandboxResponse>, Status> {
        Err(not_yet("RunPodSandbox", Item::Pods))
    }

    async fn stop_pod_sandbox(
        &self,
        _req: Request<proto::StopPodSandboxRequest>,
    ) -> Result<Response<proto::StopPodSandboxResponse>, Status> {
        Err(not_yet("StopPodSandbox", Item::Pods))
    }

    async fn remove_pod_sandbox(
        &self,
        _req: Request<proto::RemovePodSandboxRequest>,
    ) -> Result<Response<proto::RemovePodSandboxResponse>, Status> {
        Err(not_yet("RemovePodSandbox", Item::Pods))
    }

    async fn pod_sandbox_status(
        &self,
        _req: Request<proto::PodSandboxStatusRequest>,
    ) -> Result<Response<proto::PodSandboxStatusResponse>, Status> {
        Err(not_yet("PodSandboxStatus", Item::Pods))
    }

    async fn list_pod_sandbox(
        &self,
        _req: Request<proto::ListPodSandboxRequest>,
    ) -> Result<Response<proto::ListPodSandboxResponse>, Status> {
        Err(not_yet("ListPodSandbox", Item::Pods))
    }

    type StreamPodSandboxesStream = Unsupported<proto::StreamPodSandboxesResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _req: Request<proto::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(not_yet("StreamPodSandboxes", Item::Pods))
    }

    async fn create_container(
        &self,
        _req: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        Err(not_yet("CreateContainer", Item::Containers))
    }

    async fn start_container(
        &self,
        _req: Request<proto::StartContainerRequest>,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        Err(not_yet("StartContainer", Item::Containers))
    }

    async fn stop_container(
        &self,
        _req: Request<proto::StopContainerRequest>,
    ) -> Result<Response<proto::StopContainerResponse>, Status> {
        Err(not_yet("StopContainer", Item::Containers))
    }

    async fn remove_container(
        &self,
        _req: Request<proto::RemoveContainerRequest>,
    ) -> Result<Response<proto::RemoveContainerResponse>, Status> {
        Err(not_yet("RemoveContainer", Item::Containers))
    }

    async fn list_containers(
        &self,
        _req: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        Err(not_yet("ListContainers", Item::Containers))
    }

    type StreamContainersStream = Unsupported<proto::StreamContainersResponse>;

    async fn stream_containers(
        &self,
        _req: Request<proto::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(not_yet("StreamContainers", Item::Containers))
    }

    async fn container_status(
        &self,
        _req: Request<proto::ContainerStatusRequest>,
    ) -> Result<Response<proto::ContainerStatusResponse>, Status> {
        Err(not_yet("ContainerStatus", Item::Containers))
    }

    async fn update_container_resources(
        &self,
        _req: Request<proto::UpdateContainerResourcesRequest>,
    ) -> Result<Response<proto::UpdateContainerResourcesResponse>, Status> {
        Err(not_yet("UpdateContainerResources", Item::Containers))
    }

    async fn reopen_container_log(
        &self,
        _req: Request<proto::ReopenContainerLogRequest>,
    ) -> Result<Response<proto::ReopenContainerLogResponse>, Status> {
        Err(not_yet("ReopenContainerLog", Item::Containers))
    }

    async fn exec_sync(
        &self,
        _req: Request<proto::ExecSyncRequest>,
    ) -> Result<Response<proto::ExecSyncResponse>, Status> {
        Err(not_yet("ExecSync", Item::Containers))
    }

    async fn exec(
        &self,
        _req: Request<proto::ExecRequest>,
    ) -> Result<Response<proto::ExecResponse>, Status> {
        Err(not_yet("Exec", Item::Streaming))
    }

    async fn attach(
        &self,
        _req: Request<proto::AttachRequest>,
    ) -> Result<Response<proto::AttachResponse>, Status> {
        Err(not_yet("Attach", Item::Streaming))
    }

    async fn port_forward(
        &self,
        _req: Request<proto::PortForwardRequest>,
    ) -> Result<Response<proto::PortForwardResponse>, Status> {
        Err(not_yet("PortForward", Item::Streaming))
    }

    async fn container_stats(
        &self,
        _req: Request<proto::ContainerStatsRequest>,
    ) -> Result<Response<proto::ContainerStatsResponse>, Status> {
        Err(not_yet("ContainerStats", Item::Stats))
    }

    async fn list_container_stats(
        &self,
        _req: Request<proto::ListContainerStatsRequest>,
    ) -> Result<Response<proto::ListContainerStatsResponse>, Status> {
        Err(not_yet("ListContainerStats", Item::Stats))
    }

    type StreamContainerStatsStream = Unsupported<proto::StreamContainerStatsResponse>;

    async fn stream_container_stats(
        &self,
        _req: Request<proto::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(not_yet("StreamContainerStats", Item::Stats))
    }

    async fn pod_sandbox_stats(
        &self,
        _req: Request<proto::PodSandboxStatsRequest>,
    ) -> Result<Response<proto::PodSandboxStatsResponse>, Status> {
        Err(not_yet("PodSandboxStats", Item::Stats))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<proto::ListPodSandboxStatsRequest>,
    ) -> Result<Response<proto::ListPodSandboxStatsResponse>, Status> {
        Err(not_yet("ListPodSandboxStats", Item::Stats))
    }

    type StreamPodSandboxStatsStream = Unsupported<proto::StreamPodSandboxStatsResponse>;

    async fn stream_pod_sandbox_stats(
        &self,
        _req: Request<proto::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(not_yet("StreamPodSandboxStats", Item::Stats))
    }

    async fn checkpoint_container(
        &self,
        _req: Request<proto::CheckpointContainerRequest>,
    ) -> Result<Response<proto::CheckpointContainerResponse>, Status> {
        Err(not_yet("CheckpointContainer", Item::Checkpoint))
    }

    type GetContainerEventsStream = Unsupported<proto::ContainerEventResponse>;

    async fn get_container_events(
        &self,
        _req: Request<proto::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(not_yet("GetContainerEvents", Item::Events))
    }

    async fn list_metric_descriptors(
        &self,
        _req: Request<proto::ListMetricDescriptorsRequest>,
    ) -> Result<Response<proto::ListMetricDescriptorsResponse>, Status> {
        Err(not_yet("ListMetricDescriptors", Item::Stats))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<proto::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<proto::ListPodSandboxMetricsResponse>, Status> {
        Err(not_yet("ListPodSandboxMetrics", Item::Stats))
    }

    type StreamPodSandboxMetricsStream = Unsupported<proto::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandbox_metrics(
        &self,
        _req: Request<proto::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(not_yet("StreamPodSandboxMetrics", Item::Stats))
    }

    async fn update_pod_sandbox_resources(
        &self,
        _req: Request<proto::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<proto::UpdatePodSandboxResourcesResponse>, Status> {
        Err(not_yet("UpdatePodSandboxResources", Item::Pods))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs() {
        assert!(check_pod_cidr("10.244.1.0/24").is_ok());
        assert!(check_pod_cidr("10.244.1.0/24,fd00:1::/64").is_ok());
        assert!(check_pod_cidr("10.244.1.0").is_err());
        assert!(check_pod_cidr("10.244.1.0/33").is_err());
        assert!(check_pod_cidr("ten/8").is_err());
    }

    #[test]
    fn unimplemented_names_the_call_and_the_item() {
        let s = not_yet("RunPodSandbox", Item::Pods);
        assert_eq!(s.code(), tonic::Code::Unimplemented);
        assert!(s.message().contains("RunPodSandbox") && s.message().contains("issue 14"));
    }
}

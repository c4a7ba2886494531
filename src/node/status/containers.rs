//! CRI container statuses -> API container statuses
//! (kubelet_pods.go convertToAPIContainerStatuses).
